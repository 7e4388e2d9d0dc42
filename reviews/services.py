"""The review queue: doubtful predictions in, reviewers' decisions out."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from batches.storage import media_path

from .models import ReviewItem


class ReviewError(Exception):
    pass


def queue_for_review(predictions: QuerySet) -> None:
    """One pending ReviewItem per prediction the model did not accept, with its reason;
    predictions already queued are left alone."""
    doubtful = predictions.exclude(review_reason="").values_list("id", "review_reason")
    ReviewItem.objects.bulk_create(
        [ReviewItem(prediction_id=pk, reason=reason) for pk, reason in doubtful],
        ignore_conflicts=True,
    )


def record_correction(item: ReviewItem, final_class: str, reviewer) -> ReviewItem:
    """Store a reviewer's decision: confirmed if it matches the prediction, corrected otherwise.

    The prediction is never changed; who decided and when are kept on the review item.
    """
    known = set(item.prediction.probabilities)
    if final_class not in known:
        raise ReviewError(f"{final_class!r} is not one of the model's classes")
    with transaction.atomic():
        locked = ReviewItem.objects.select_for_update().get(pk=item.pk)
        locked.final_class = final_class
        locked.status = (
            ReviewItem.Status.CONFIRMED
            if final_class == item.prediction.predicted_class
            else ReviewItem.Status.CORRECTED
        )
        locked.reviewer = reviewer
        locked.reviewed_at = timezone.now()
        locked.save(update_fields=["final_class", "status", "reviewer", "reviewed_at"])
    return locked


def confirm_predictions(items: QuerySet, reviewer) -> int:
    """Confirm the predicted class of every pending item given (the admin's bulk action)."""
    confirmed = 0
    for item in items.pending().select_related("prediction"):
        record_correction(item, item.prediction.predicted_class, reviewer)
        confirmed += 1
    return confirmed


class ReviewedPhoto(NamedTuple):
    image_id: int
    path: Path  # the stored photo
    final_class: str


def reviewed_photos() -> list[ReviewedPhoto]:
    """Every reviewed photo once, with the final class of its latest decision: training data for
    the next model (`train --include-reviews`, `export_reviews`)."""
    latest = {}
    decided = ReviewItem.objects.decided().select_related("prediction__image").order_by("reviewed_at", "id")
    for item in decided:
        image = item.prediction.image
        latest[image.pk] = ReviewedPhoto(image.pk, media_path(image.file.name), item.final_class)
    return list(latest.values())
