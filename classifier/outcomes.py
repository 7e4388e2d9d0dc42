"""What a classifier says about each photo: the types its callers receive.

A classifier answers every photo it is given, in order, with an `Outcome`: a `Classification`,
or the photo's `Rejection` (imaging) when it cannot be classified. Nothing here needs torch, so
the batch engine, /predict and the models use these types without loading the network.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models

from .imaging import Rejection


class ReviewReason(models.TextChoices):
    """Why a photo goes to a reviewer instead of being accepted automatically."""

    LOW_CONFIDENCE = "low_confidence", "Low confidence"
    UNKNOWN_ITEM = "unknown_item", "Unknown item (none of our classes?)"


@dataclass(frozen=True)
class Classification:
    """A photo's class with its calibrated confidence, the confidence its class needs to be
    accepted automatically, and why it needs a reviewer (None: it is accepted automatically)."""

    predicted_class: str
    confidence: float
    probabilities: dict[str, float]
    review_reason: ReviewReason | None = None
    threshold: float | None = None

    @property
    def auto_accepted(self) -> bool:
        return self.review_reason is None

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]


Outcome = Classification | Rejection
