from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from classifier.outcomes import ReviewReason


class ReviewItemQuerySet(models.QuerySet):
    def pending(self) -> ReviewItemQuerySet:
        return self.filter(status=ReviewItem.Status.PENDING)

    def decided(self) -> ReviewItemQuerySet:
        return self.exclude(status=ReviewItem.Status.PENDING)


class ReviewItem(models.Model):
    """A doubtful prediction waiting for (or carrying) a reviewer's decision.

    The prediction itself is never changed: the decision lives here.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        CONFIRMED = "confirmed", "Confirmed"
        CORRECTED = "corrected", "Corrected"

    prediction = models.OneToOneField("batches.Prediction", on_delete=models.CASCADE, related_name="review")
    reason = models.CharField(max_length=20, choices=ReviewReason.choices, default=ReviewReason.LOW_CONFIDENCE)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    final_class = models.CharField(max_length=100, blank=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = ReviewItemQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Review of {self.prediction.image} ({self.get_status_display()})"
