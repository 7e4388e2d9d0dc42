"""How good the automatic decisions and the reviewers are, measured from the decision log.

- Audited precision: of the automatically accepted predictions sampled for audit and settled by a
  reviewer, the share whose class the reviewer confirmed (an unusable photo tells nothing and is left
  out), overall and per predicted class, with a 95% Wilson score interval.
- Agreement between reviewers: of the second opinions, the share that gave the first reviewer's answer.
- Reviewers' figures per reviewer and day.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from .models import AUDIT, Outcome, ReviewDecision, ReviewItem

Z_95 = 1.959963984540054  # the two-sided 95% quantile of the normal distribution
REVIEWER_DAYS = 14


def wilson_interval(agreed: int, n: int, z: float = Z_95) -> tuple[float, float] | tuple[None, None]:
    """The Wilson score interval of a proportion agreed / n (None, None when n is 0)."""
    if n == 0:
        return None, None
    p = agreed / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 or n agreed the bound is exactly 0 or 1 (the arithmetic above leaves a rounding error).
    low = 0.0 if agreed == 0 else max(0.0, centre - half)
    high = 1.0 if agreed == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Estimate:
    audited: int
    agreed: int
    precision: float | None
    low: float | None
    high: float | None
    failing: bool  # the whole interval lies below the promised precision

    @classmethod
    def of(cls, agreed: int, n: int, target: float) -> Estimate:
        low, high = wilson_interval(agreed, n)
        return cls(n, agreed, agreed / n if n else None, low, high, high is not None and high < target)


def audit_precision() -> dict:
    """{"target", "overall", "per_class"}: the live precision of automatic decisions."""
    target = settings.AUTO_ACCEPT_PRECISION
    rows = (
        ReviewItem.objects.decided()
        .filter(reason=AUDIT)
        .exclude(outcome=Outcome.UNUSABLE)
        .values_list("prediction__predicted_class")
        .annotate(n=Count("id"), agreed=Count("id", filter=Q(outcome=Outcome.CONFIRMED)))
        .order_by("prediction__predicted_class")
    )
    per_class = {name: Estimate.of(agreed, n, target) for name, n, agreed in rows}
    overall = Estimate.of(sum(e.agreed for e in per_class.values()), sum(e.audited for e in per_class.values()), target)
    return {
        "target": target,
        "overall": asdict(overall),
        "per_class": {name: asdict(estimate) for name, estimate in per_class.items()},
    }


def reviewer_agreement() -> dict:
    """Per predicted class: second opinions given, and how many agreed with the first reviewer."""
    rows = (
        ReviewDecision.objects.filter(stage=ReviewDecision.Stage.SECOND_OPINION, agrees__isnull=False)
        .values_list("item__prediction__predicted_class")
        .annotate(n=Count("id"), agreed=Count("id", filter=Q(agrees=True)))
        .order_by("item__prediction__predicted_class")
    )
    return {name: {"opinions": n, "agreed": agreed, "share": agreed / n} for name, n, agreed in rows}


def reviewer_figures(days: int = REVIEWER_DAYS) -> list[dict]:
    """Per reviewer and day (newest first): decisions, median seconds on screen, share corrected,
    and how often second opinions and audits agreed with them."""
    since = timezone.now() - timedelta(days=days)
    figures: dict[tuple, dict] = defaultdict(
        lambda: {
            "decisions": 0,
            "seconds": [],
            "corrected": 0,
            "checked": 0,
            "checked_agreed": 0,
            "audits": 0,
            "audits_agreed": 0,
        }
    )
    decisions = ReviewDecision.objects.filter(decided_at__gte=since).values_list(
        "reviewer__username", "decided_at", "outcome", "seconds", "item__reason", "stage"
    )
    for username, decided_at, outcome, seconds, reason, stage in decisions:
        row = figures[(timezone.localdate(decided_at), username)]
        row["decisions"] += 1
        row["corrected"] += outcome == Outcome.CORRECTED
        if seconds is not None:
            row["seconds"].append(seconds)
        if reason == AUDIT and stage == ReviewDecision.Stage.FIRST and outcome != Outcome.UNUSABLE:
            row["audits"] += 1
            row["audits_agreed"] += outcome == Outcome.CONFIRMED
    checked = ReviewDecision.objects.filter(
        stage=ReviewDecision.Stage.SECOND_OPINION, agrees__isnull=False, compared_with__decided_at__gte=since
    ).values_list("compared_with__reviewer__username", "compared_with__decided_at", "agrees")
    for username, decided_at, agrees in checked:
        row = figures[(timezone.localdate(decided_at), username)]
        row["checked"] += 1
        row["checked_agreed"] += agrees
    return [
        {
            "day": day.isoformat(),
            "reviewer": username or "(deleted user)",
            "decisions": row["decisions"],
            "median_seconds": statistics.median(row["seconds"]) if row["seconds"] else None,
            "share_corrected": row["corrected"] / row["decisions"] if row["decisions"] else None,
            "second_opinions": row["checked"],
            "second_opinion_agreement": row["checked_agreed"] / row["checked"] if row["checked"] else None,
            "audits": row["audits"],
            "audit_agreement": row["audits_agreed"] / row["audits"] if row["audits"] else None,
        }
        for (day, username), row in sorted(
            figures.items(), key=lambda entry: (entry[0][0], entry[0][1] or ""), reverse=True
        )
    ]


def quality_report() -> dict:
    """Everything the Quality page and GET /api/quality/ show."""
    return {
        **audit_precision(),
        "reviewer_agreement": reviewer_agreement(),
        "reviewers": reviewer_figures(),
        "waiting": dict(ReviewItem.objects.waiting().values_list("status").annotate(n=Count("id")).order_by("status")),
    }
