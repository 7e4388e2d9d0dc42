"""The review queue: doubtful (and audited) predictions, and the log of reviewers' decisions.

A `ReviewItem` is one prediction waiting for people. Every decision is its own `ReviewDecision`
row, never changed; the item carries the state its latest decisions lead to (`reviews.services`
writes both in one transaction) and the claim of the reviewer it is handed to on the desk.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Now
from django.utils import timezone

from classifier.outcomes import ReviewReason

AUDIT = "audit"
# Why an item is in the queue: the model's reasons, or a sampled audit of an automatic decision.
REASON_CHOICES = [*ReviewReason.choices, (AUDIT, "Audit of an automatic decision")]


class Outcome(models.TextChoices):
    CONFIRMED = "confirmed", "Confirmed"
    CORRECTED = "corrected", "Corrected"
    NONE_OF_OUR_CATEGORIES = "none_of_our_categories", "None of our categories"
    UNUSABLE = "unusable", "Unusable photo"


# Outcomes that name one of our classes: the only ones trained on.
CLASS_OUTCOMES = (Outcome.CONFIRMED, Outcome.CORRECTED)


class ReviewItemQuerySet(models.QuerySet):
    def pending(self) -> ReviewItemQuerySet:
        """Waiting for a first decision."""
        return self.filter(status=ReviewItem.Status.PENDING)

    def waiting(self) -> ReviewItemQuerySet:
        """Waiting for someone: a first decision, a second opinion or a lead's decision."""
        return self.filter(status__in=ReviewItem.WAITING)

    def decided(self) -> ReviewItemQuerySet:
        """Settled: no decision is awaited (training data, audit figures)."""
        return self.filter(status=ReviewItem.Status.DECIDED)

    def unclaimed(self) -> ReviewItemQuerySet:
        """Nobody holds a live claim on them (on the database clock)."""
        return self.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=Now()))

    def for_reviewer(self, user, lead: bool) -> ReviewItemQuerySet:
        """What the desk may hand this reviewer: first decisions, second opinions on items they
        have not decided, and (for leads) disputes they are not part of."""
        theirs = ReviewDecision.objects.filter(item=OuterRef("pk"), reviewer=user)
        others = Q(status=ReviewItem.Status.SECOND_OPINION)
        if lead:
            others |= Q(status=ReviewItem.Status.DISPUTED)
        return self.filter(Q(status=ReviewItem.Status.PENDING) | (others & ~Exists(theirs)))


class ReviewItem(models.Model):
    """A prediction waiting for (or carrying) reviewers' decisions. The prediction itself is
    never changed: the decisions live in `ReviewDecision`, the latest state here."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SECOND_OPINION = "second_opinion", "Waiting for a second opinion"
        DISPUTED = "disputed", "Disputed: waiting for a lead"
        DECIDED = "decided", "Decided"

    WAITING = (Status.PENDING, Status.SECOND_OPINION, Status.DISPUTED)

    prediction = models.OneToOneField("batches.Prediction", on_delete=models.CASCADE, related_name="review")
    reason = models.CharField(max_length=20, choices=REASON_CHOICES, default=ReviewReason.LOW_CONFIDENCE)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    # The latest decision's outcome, class, reviewer and time (empty until the first one).
    outcome = models.CharField(max_length=30, choices=Outcome.choices, blank=True)
    final_class = models.CharField(max_length=100, blank=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    # The desk hands an item to one reviewer at a time: a lease on the database clock.
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = ReviewItemQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["status", "id"], name="reviewitem_queue")]
        permissions = [
            ("settle_dispute", "Can give the deciding opinion when two reviewers disagree"),
            ("view_quality", "Can see the audited precision and the reviewers' figures"),
        ]

    def __str__(self) -> str:
        return f"Review of {self.prediction.image} ({self.state})"

    @property
    def state(self) -> str:
        """One word for exports: pending, second_opinion, disputed, or the settled outcome."""
        return self.outcome if self.status == self.Status.DECIDED else self.status

    @property
    def answer(self) -> str | None:
        """The class people gave the photo once someone has and no one disagrees ("" when it is none
        of our classes or unusable); None while it waits for a first decision or a lead."""
        if self.status in (self.Status.PENDING, self.Status.DISPUTED):
            return None
        return self.final_class

    @property
    def queue_reason(self) -> str:
        """Why it is on the desk now: its own reason, or the opinion it waits for."""
        if self.status == self.Status.SECOND_OPINION:
            return "second_opinion"
        if self.status == self.Status.DISPUTED:
            return "disputed"
        return self.reason


class ReviewDecision(models.Model):
    """One reviewer's decision on one item, as made: never changed, never deleted."""

    class Source(models.TextChoices):
        DESK = "desk", "Review desk"
        GRID = "grid", "Grid"
        BULK = "bulk", "Bulk action"
        FORM = "form", "Change form"

    class Stage(models.TextChoices):
        FIRST = "first", "First decision"
        SECOND_OPINION = "second_opinion", "Second opinion"
        SETTLING = "settling", "Lead's deciding opinion"

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="decisions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    decided_at = models.DateTimeField(default=timezone.now, db_index=True)
    outcome = models.CharField(max_length=30, choices=Outcome.choices)
    final_class = models.CharField(max_length=100, blank=True, help_text="The class chosen (empty: not one of ours)")
    class_before = models.CharField(max_length=100, blank=True, help_text="The item's class before this decision")
    seconds = models.FloatField(null=True, blank=True, help_text="Seconds the photo was on screen")
    source = models.CharField(max_length=10, choices=Source.choices)
    note = models.CharField(max_length=200, blank=True)
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.FIRST)
    # A second opinion (or a lead's decision) and the decision it was compared with.
    compared_with = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    agrees = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["decided_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()} {self.final_class} by {self.reviewer}".strip()

    def same_answer(self, other: ReviewDecision) -> bool:
        return (self.outcome in CLASS_OUTCOMES and self.final_class == other.final_class) or (
            self.outcome not in CLASS_OUTCOMES and self.outcome == other.outcome
        )
