"""Handing review items to reviewers: a claim is a lease on the database clock.

Items are claimed with `SELECT … FOR UPDATE SKIP LOCKED` in a short transaction, so reviewers
working at once never get the same item and never wait for one another; an expired claim
(`REVIEW_CLAIM_SECONDS`) returns the item to the pool. A claim is released by a decision, a skip,
or its end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, Exists, ExpressionWrapper, OuterRef, Q
from django.db.models.functions import Now

from .models import AUDIT, ReviewDecision, ReviewItem

# The reasons a reviewer can choose a queue by: the item's own, or the opinion it waits for.
QUEUE_REASONS = ("low_confidence", "unknown_item", AUDIT, "second_opinion", "disputed")


@dataclass(frozen=True)
class Queue:
    """Which items a reviewer works through: all, or one predicted class, reason or run."""

    predicted_class: str = ""
    reason: str = ""
    run: int | None = None

    def apply(self, items):
        if self.predicted_class:
            items = items.filter(prediction__predicted_class=self.predicted_class)
        if self.reason == "second_opinion":
            items = items.filter(status=ReviewItem.Status.SECOND_OPINION)
        elif self.reason == "disputed":
            items = items.filter(status=ReviewItem.Status.DISPUTED)
        elif self.reason:
            items = items.filter(status=ReviewItem.Status.PENDING, reason=self.reason)
        if self.run is not None:
            items = items.filter(prediction__batch_run_id=self.run)
        return items


def is_lead(user) -> bool:
    return user.has_perm("reviews.settle_dispute")


def queue_items(reviewer, queue: Queue):
    """The items this reviewer may be handed in this queue, whoever holds them now."""
    return queue.apply(ReviewItem.objects.for_reviewer(reviewer, is_lead(reviewer)))


# The most items one reviewer holds at once (the grid's size).
MAX_HELD = 48


def claim_items(reviewer, queue: Queue, count: int, exclude=(), resume: bool = False) -> list[ReviewItem]:
    """Claim up to `count` free items of the queue for the reviewer, oldest first, skipping the
    ids in `exclude` (those the reviewer already holds or skipped). With `resume` (a desk or grid
    opening), every item the reviewer still holds comes first, however many (after a page reload,
    or the photos marked on the grid), and free ones make up the count."""
    items = queue_items(reviewer, queue).exclude(pk__in=list(exclude)).select_related("prediction__image")
    claimed = []
    if resume:
        claimed = list(items.filter(claimed_by=reviewer, claimed_until__gt=Now()).order_by("id")[:MAX_HELD])
    with transaction.atomic():
        if len(claimed) < count:
            free = items.unclaimed().exclude(pk__in=[item.pk for item in claimed])
            claimed += list(
                free.select_for_update(skip_locked=True, of=("self",)).order_by("id")[: count - len(claimed)]
            )
        _lease([item.pk for item in claimed], reviewer)
    return claimed


def claim_item(item_id: int, reviewer) -> ReviewItem | None:
    """Claim one given item, unless someone else holds it now: one the reviewer decided (to look
    at it again), or one of their queue."""
    theirs = Exists(ReviewDecision.objects.filter(item=OuterRef("pk"), reviewer=reviewer))
    queued = Exists(ReviewItem.objects.for_reviewer(reviewer, is_lead(reviewer)).filter(pk=OuterRef("pk")))
    with transaction.atomic():
        item = (
            ReviewItem.objects.filter(theirs | queued)
            .filter(Q(claimed_by=reviewer) | Q(claimed_until__isnull=True) | Q(claimed_until__lte=Now()))
            .select_related("prediction__image")
            .select_for_update(skip_locked=True, of=("self",))
            .filter(pk=item_id)
            .first()
        )
        if item is not None:
            _lease([item.pk], reviewer)
    return item


def release_items(ids, reviewer) -> int:
    """Give the reviewer's claims on these items back to the pool."""
    return ReviewItem.objects.filter(pk__in=list(ids), claimed_by=reviewer).update(claimed_by=None, claimed_until=None)


def renew_claims(ids, reviewer) -> int:
    """Extend the reviewer's live claims on these items (the desk does so while it is open)."""
    live = ReviewItem.objects.filter(pk__in=list(ids), claimed_by=reviewer, claimed_until__gt=Now())
    return live.update(claimed_until=_until())


def _lease(ids: list[int], reviewer) -> None:
    if ids:
        ReviewItem.objects.filter(pk__in=ids).update(claimed_by=reviewer, claimed_until=_until())


def _until():
    return ExpressionWrapper(Now() + timedelta(seconds=settings.REVIEW_CLAIM_SECONDS), output_field=DateTimeField())
