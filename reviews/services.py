"""The review queue: doubtful and audited predictions in, a log of reviewers' decisions out.

Every decision (from the desk, the grid, the admin's bulk action or its change form) goes through
`record_decision`, which appends one `ReviewDecision` row and moves the item to the state the
decisions lead to, in one transaction:

    pending --first decision--> decided, or second_opinion (sampled, or a correction of a
    prediction the model held above 0.9) --another reviewer agrees--> decided
                                         --another reviewer disagrees--> disputed --a lead--> decided

A reviewer who decides an item again changes their own opinion (the earlier row stays); a
reviewer who disagrees with someone else's settled decision opens a dispute rather than erase it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import BooleanField, Case, QuerySet, Value, When
from django.db.models.functions import Now

from batches.storage import local_path

from .models import AUDIT, CLASS_OUTCOMES, Outcome, ReviewDecision, ReviewItem

# A correction of a prediction the model was this sure of always gets a second opinion.
SURE_PREDICTION = 0.9


class ReviewError(Exception):
    """A decision that cannot be recorded; `code` names why (the desk's JSON error)."""

    code = "invalid_decision"


class InvalidAnswer(ReviewError):
    code = "invalid_answer"


class ClaimedByOther(ReviewError):
    code = "claimed_by_other"


class NeedsLead(ReviewError):
    code = "needs_lead"


def sampled(key: str, rate: float) -> bool:
    """A deterministic draw: the same key always gives the same answer, `rate` of keys say yes."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def audit_sampled(sha256: str, model_version: str) -> bool:
    """Whether an automatically accepted prediction is also audited: by the photo and the version,
    so that a rerun (or another worker) picks the same ones."""
    return sampled(f"audit:{sha256}:{model_version}", settings.AUDIT_SAMPLE_RATE)


def queue_for_review(predictions: QuerySet) -> None:
    """One pending ReviewItem per prediction the model did not accept (with its reason), and per
    sampled automatic decision (`audit`); predictions already queued are left alone."""
    items = []
    for pk, reason, sha256, version in predictions.values_list("id", "review_reason", "image__sha256", "model_version"):
        if reason:
            items.append(ReviewItem(prediction_id=pk, reason=reason))
        elif audit_sampled(sha256, version):
            items.append(ReviewItem(prediction_id=pk, reason=AUDIT))
    ReviewItem.objects.bulk_create(items, ignore_conflicts=True)


def parse_answer(prediction, answer: str) -> tuple[str, str]:
    """(outcome, class chosen) for an answer: one of the model's classes, or an outcome that names none."""
    if answer in prediction.probabilities:
        outcome = Outcome.CONFIRMED if answer == prediction.predicted_class else Outcome.CORRECTED
        return outcome, answer
    if answer in (Outcome.NONE_OF_OUR_CATEGORIES, Outcome.UNUSABLE):
        return answer, ""
    raise InvalidAnswer(f"{answer!r} is not one of the model's classes")


def record_decision(
    item_id: int,
    reviewer,
    answer: str,
    *,
    source: str,
    seconds: float | None = None,
    note: str = "",
) -> ReviewDecision:
    """Append a reviewer's decision to an item's log and move the item to its next state.

    Refused (ReviewError) when someone else holds a live claim on the item, when the answer is not
    a class of the model, and when a dispute (or a lead's decision) is not the reviewer's to make.
    """
    claim_live = Case(
        When(claimed_until__gt=Now(), then=Value(True)), default=Value(False), output_field=BooleanField()
    )
    with transaction.atomic():
        item = (
            ReviewItem.objects.select_for_update(of=("self",))
            .select_related("prediction", "claimed_by")
            .annotate(claim_live=claim_live)
            .get(pk=item_id)
        )
        if item.claim_live and item.claimed_by_id not in (None, reviewer.pk):
            raise ClaimedByOther(f"{item.claimed_by} is reviewing this photo now; it is theirs until their claim ends")
        outcome, final_class = parse_answer(item.prediction, answer)
        decision = ReviewDecision(
            item=item,
            reviewer=reviewer,
            outcome=outcome,
            final_class=final_class,
            class_before=item.final_class if item.outcome else item.prediction.predicted_class,
            seconds=seconds,
            source=source,
            note=note[:200],
        )
        earlier = list(item.decisions.order_by("decided_at", "id")) if item.status != ReviewItem.Status.PENDING else []
        item.status = next_status(item, decision, earlier, lead=reviewer.has_perm("reviews.settle_dispute"))
        decision.save()
        item.outcome, item.final_class = outcome, final_class
        item.reviewer, item.reviewed_at = reviewer, decision.decided_at
        item.claimed_by = item.claimed_until = None
        item.save(
            update_fields=["status", "outcome", "final_class", "reviewer", "reviewed_at", "claimed_by", "claimed_until"]
        )
    return decision


def next_status(item: ReviewItem, new: ReviewDecision, earlier: list[ReviewDecision], lead: bool) -> str:
    """The item's state after `new` (whose stage and comparison it fills in), from its state and
    its earlier decisions (oldest first). See the module docstring."""
    status = ReviewItem.Status
    latest: dict[int | None, ReviewDecision] = {}
    for decision in earlier:  # each reviewer's latest decision, the most recent last
        latest.pop(decision.reviewer_id, None)
        latest[decision.reviewer_id] = decision
    mine = latest.pop(new.reviewer_id, None)
    other = list(latest.values())[-1] if latest else None
    settled_by_lead = item.status == status.DECIDED and bool(earlier) and earlier[-1].stage == new.Stage.SETTLING
    if item.status == status.DISPUTED or settled_by_lead or (item.status == status.DECIDED and other and not mine):
        if lead:
            return _compare(new, other, new.Stage.SETTLING, settle=True)
        if settled_by_lead:
            raise NeedsLead("a lead settled this photo: only a lead can change it")
        if item.status == status.DISPUTED and not mine:
            raise NeedsLead("two reviewers disagree on this photo: a lead decides it")
    if other is None:  # the first opinion, or its author changing it
        new.stage = new.Stage.FIRST
        return status.SECOND_OPINION if needs_second_opinion(item, new) else status.DECIDED
    if mine is not None:  # one of two opinions changed
        return _compare(new, other, mine.stage)
    return _compare(new, other, new.Stage.SECOND_OPINION)


def _compare(new: ReviewDecision, other: ReviewDecision | None, stage: str, settle: bool = False) -> str:
    new.stage, new.compared_with = stage, other
    new.agrees = new.same_answer(other) if other is not None else None
    if settle or new.agrees is not False:
        return ReviewItem.Status.DECIDED
    return ReviewItem.Status.DISPUTED


def needs_second_opinion(item: ReviewItem, decision: ReviewDecision) -> bool:
    if decision.outcome == Outcome.CORRECTED and item.prediction.confidence > SURE_PREDICTION:
        return True
    return sampled(f"second-opinion:{item.pk}", settings.REVIEW_SECOND_OPINION_RATE)


def confirm_predictions(
    items: QuerySet, reviewer, source: str = ReviewDecision.Source.BULK
) -> tuple[int, list[tuple[ReviewItem, ReviewError]]]:
    """Confirm the predicted class of every waiting item given (the admin's bulk action, the grid);
    returns how many were confirmed, and the others with why each was refused."""
    confirmed, refused = 0, []
    for item in items.waiting().select_related("prediction__image"):
        try:
            record_decision(item.pk, reviewer, item.prediction.predicted_class, source=source)
        except ReviewError as exc:
            refused.append((item, exc))
        else:
            confirmed += 1
    return confirmed, refused


class ReviewedPhoto(NamedTuple):
    image_id: int
    path: Path  # the stored photo
    outcome: str
    final_class: str  # empty when the photo shows none of our classes, or is unusable


def reviewed_photos(outcomes=CLASS_OUTCOMES) -> list[ReviewedPhoto]:
    """Every settled photo once, with its latest decision (the most recent item's when a photo was
    reviewed for several model versions), for the given outcomes: by default those naming one of
    our classes, the training data of the next model (`train --include-reviews`, `export_reviews`).
    Items waiting for a second opinion or a lead are left out until they are settled."""
    latest = {}
    decided = ReviewItem.objects.decided().select_related("prediction__image").order_by("reviewed_at", "id")
    for item in decided:
        image = item.prediction.image
        latest[image.pk] = ReviewedPhoto(image.pk, local_path(image.file.name), item.outcome, item.final_class)
    return [photo for photo in latest.values() if photo.outcome in outcomes]


def training_samples(classes: list[str]) -> tuple[list[tuple[Path, int]], int]:
    """(stored photo, class index) for every reviewed photo whose final class is one of `classes`
    (the training data's), and how many reviewed photos were left out for naming another class."""
    reviewed = reviewed_photos()
    samples = [(photo.path, classes.index(photo.final_class)) for photo in reviewed if photo.final_class in classes]
    return samples, len(reviewed) - len(samples)
