"""The review queue: doubtful predictions in, reviewers' decisions out."""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

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


def pending_count(predictions: QuerySet) -> int:
    return ReviewItem.objects.pending().filter(prediction__in=predictions).count()


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


def training_labels() -> QuerySet:
    """Decided review items with the photo and its final class: training data for the next model."""
    return ReviewItem.objects.decided().select_related("prediction__image")


def reviewed_photos() -> list[tuple]:
    """Every reviewed photo once, with the final class of its latest decision: (Image, class)."""
    latest = {}
    for item in training_labels().order_by("reviewed_at", "id"):
        latest[item.prediction.image_id] = (item.prediction.image, item.final_class)
    return list(latest.values())
