from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Now
from django.utils import timezone

from classifier.imaging import FailureReason
from classifier.outcomes import ReviewReason


class ImageQuerySet(models.QuerySet):
    def unresolved_for(self, version: str) -> ImageQuerySet:
        """Images with neither a prediction nor a failure for this model version."""
        return self.exclude(_has_outcome(version))

    def with_outcomes(self, version: str) -> ImageQuerySet:
        """Prefetch each image's prediction (as `hits`, with its review) and failure (`fails`) for a version."""
        return self.prefetch_related(
            models.Prefetch(
                "predictions", Prediction.objects.filter(model_version=version).select_related("review"), "hits"
            ),
            models.Prefetch("failures", FailedImage.objects.filter(model_version=version), "fails"),
        )

    def with_outcome(self, version: str, outcome: str) -> ImageQuerySet:
        """Images whose outcome for a version is `outcome`: review (predicted, not accepted
        automatically), accepted (automatically), failed, or pending (none yet)."""
        predictions = Prediction.objects.filter(image=OuterRef("pk"), model_version=version)
        if outcome == "review":
            return self.filter(Exists(predictions.exclude(review_reason="")))
        if outcome == "accepted":
            return self.filter(Exists(predictions.filter(review_reason="")))
        if outcome == "failed":
            return self.filter(Exists(FailedImage.objects.filter(image=OuterRef("pk"), model_version=version)))
        if outcome == "pending":
            return self.unresolved_for(version)
        raise ValueError(f"unknown outcome {outcome!r}")

    def claimable_for(self, version: str) -> ImageQuerySet:
        """Unresolved images whose lease (if any, for this version) has expired, on the database clock."""
        free = ~Q(lease_version=version) | Q(lease_until__isnull=True) | Q(lease_until__lt=Now())
        return self.unresolved_for(version).filter(free)


def _has_outcome(version: str) -> Q:
    predicted = Prediction.objects.filter(image=OuterRef("pk"), model_version=version)
    failed = FailedImage.objects.filter(image=OuterRef("pk"), model_version=version)
    return Q(Exists(predicted)) | Q(Exists(failed))


class Image(models.Model):
    """One photo, stored once under media/ by its content hash, whatever its original name."""

    class Source(models.TextChoices):
        UPLOAD = "upload", "Web upload"
        INBOX = "inbox", "Inbox folder"
        API = "api", "API"

    sha256 = models.CharField(max_length=64, unique=True)
    file = models.FileField(max_length=200)
    original_name = models.CharField(max_length=255, blank=True, help_text="As sent; metadata only, never a path")
    source = models.CharField(max_length=10, choices=Source.choices)
    size_bytes = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Claim bookkeeping of the batch engine (batches.engine.claim_next).
    lease_version = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    objects = ImageQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        permissions = [("classify_image", "Can classify photos through /predict")]

    def __str__(self) -> str:
        return self.original_name or self.sha256[:12]


class BatchRunQuerySet(models.QuerySet):
    def running(self) -> BatchRunQuerySet:
        return self.filter(status=BatchRun.Status.RUNNING)

    def worked(self) -> BatchRunQuerySet:
        """Finished runs that had photos to classify (not running, not skipped, not empty): what
        the last-run figures of /metrics describe."""
        return self.exclude(status__in=[BatchRun.Status.RUNNING, BatchRun.Status.SKIPPED]).filter(total__gt=0)


class BatchRun(models.Model):
    """One classification run over a set of images, pinned to one model version."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        COMPLETED_WITH_FAILURES = "completed_with_failures", "Completed with failures"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"  # the nightly schedule fired while its previous run still ran

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Nightly schedule"
        BUTTON = "button", "Web page"
        API = "api", "API"
        COMMAND = "command", "Command line"

    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.RUNNING, db_index=True)
    model_version = models.CharField(max_length=32)
    model_demo = models.BooleanField(default=False)
    images = models.ManyToManyField(Image, through="BatchRunImage", related_name="batch_runs")
    total = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_activity_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Filled in when the run finishes, so history pages need no counting.
    n_predicted = models.PositiveIntegerField(default=0)
    n_failed = models.PositiveIntegerField(default=0)
    n_review = models.PositiveIntegerField(default=0)
    class_counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # Files of the upload that started the run which were refused before storing (never images):
    # [{"name", "reason", "detail"}], shown on the run page and in its export.
    refused = models.JSONField(default=list, blank=True)
    # Kept when the run finishes (classifier.drift): its predictions' calibrated confidence per
    # tenth, and the PSI of its class mix and of that histogram against its version's baseline.
    confidence_histogram = models.JSONField(default=list, blank=True)
    drift = models.JSONField(default=dict, blank=True, help_text="PSI by kind: classes, confidence")

    objects = BatchRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Run {self.pk} ({self.get_status_display()})"

    @property
    def is_finished(self) -> bool:
        return self.status != self.Status.RUNNING

    @property
    def duration_seconds(self) -> float | None:
        end = self.finished_at or (None if self.is_finished else timezone.now())
        return (end - self.created_at).total_seconds() if end else None

    @property
    def images_per_second(self) -> float | None:
        duration = self.duration_seconds
        done = self.n_predicted + self.n_failed
        return done / duration if duration and self.finished_at and done else None

    def counts(self) -> dict:
        """Progress: how many of the run's photos have an outcome for its version."""
        predicted = Prediction.objects.for_run(self).count()
        failed = FailedImage.objects.for_run(self).count()
        return {
            "total": self.total,
            "predicted": predicted,
            "failed": failed,
            "done": predicted + failed,
            "pending": max(0, self.total - predicted - failed),
        }

    def failure_counts(self) -> dict[str, int]:
        """Failed photos of the run by reason, the most frequent first."""
        failures = FailedImage.objects.for_run(self)
        return dict(failures.values_list("reason").annotate(n=models.Count("id")).order_by("-n"))

    def result_images(self, outcome: str = "") -> ImageQuerySet:
        """The run's images in order (those with `outcome` only, when given: see
        ImageQuerySet.with_outcome), each with its outcome for the run's version prefetched."""
        images = self.images.order_by("id")
        if outcome:
            images = images.with_outcome(self.model_version, outcome)
        return images.with_outcomes(self.model_version)

    def class_distribution(self) -> list[dict]:
        """Per predicted class, the photos accepted automatically and those sent to review, the
        largest class first (live while the run runs)."""
        rows = (
            Prediction.objects.for_run(self)
            .values("predicted_class")
            .annotate(
                total=models.Count("id"),
                review=models.Count("id", filter=~Q(review_reason="")),
            )
            .order_by("-total", "predicted_class")
        )
        return [
            {
                "name": r["predicted_class"],
                "total": r["total"],
                "review": r["review"],
                "accepted": r["total"] - r["review"],
            }
            for r in rows
        ]

    @property
    def drift_rows(self) -> list[dict]:
        """The PSI of each kind with its reading (stable, moved, drifted), for pages."""
        from classifier.drift import reading

        names = {"classes": "class mix", "confidence": "confidence"}
        return [
            {"kind": kind, "name": names.get(kind, kind), "psi": value, "reading": reading(value)}
            for kind, value in self.drift.items()
        ]

    @property
    def drift_note(self) -> str:
        """Why a finished run has no drift figures ("" when it has them, or is not finished)."""
        from classifier.drift import DRIFT_MIN_PHOTOS

        if self.drift or not self.is_finished or self.status == self.Status.SKIPPED:
            return ""
        if self.n_predicted < DRIFT_MIN_PHOTOS:
            return f"No drift figures: fewer than {DRIFT_MIN_PHOTOS} photos classified, too few to compare."
        return f"No drift figures: version {self.model_version} keeps no baseline of its photos."

    @property
    def drift_max(self) -> dict | None:
        """The larger PSI of the two, for the history's column."""
        return max(self.drift_rows, key=lambda row: row["psi"], default=None)

    @property
    def drifted(self) -> list[str]:
        """The kinds (classes, confidence) whose PSI is above the alert level."""
        from classifier.drift import drifted

        return drifted(self.drift)

    def worker_counts(self) -> dict[str, int]:
        """Photos of the run classified or failed, by the machine (WORKER_NAME) that did it."""
        counts: dict[str, int] = {}
        for model in (Prediction, FailedImage):
            for worker, n in (
                model.objects.for_run(self).values_list("worker").annotate(n=models.Count("id")).order_by()
            ):
                counts[worker or "unknown"] = counts.get(worker or "unknown", 0) + n
        return dict(sorted(counts.items(), key=lambda item: -item[1]))

    def mark_failed(self, error: str) -> None:
        """Stop the run for a systemic reason; its unprocessed images stay pending."""
        BatchRun.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(
            status=self.Status.FAILED, error=error, finished_at=timezone.now()
        )
        self.refresh_from_db()


class BatchRunImage(models.Model):
    run = models.ForeignKey(BatchRun, on_delete=models.CASCADE)
    image = models.ForeignKey(Image, on_delete=models.CASCADE)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "image"], name="batchrunimage_unique_run_image")]

    def __str__(self) -> str:
        return f"run {self.run_id}: image {self.image_id}"


class OutcomeQuerySet(models.QuerySet):
    def for_run(self, run: BatchRun) -> OutcomeQuerySet:
        """The outcomes, for the run's model version, of the photos in the run's scope (whichever
        run wrote them: a photo already classified by that version is not classified again)."""
        return self.filter(model_version=run.model_version, image__batch_runs=run)


class Prediction(models.Model):
    """What one model version said about one image. Never changed once written."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="predictions")
    batch_run = models.ForeignKey(
        BatchRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="predictions"
    )
    model_version = models.CharField(max_length=32)
    predicted_class = models.CharField(max_length=100, db_index=True)
    confidence = models.FloatField()
    threshold = models.FloatField(null=True, blank=True, help_text="The confidence its class needed to be accepted")
    probabilities = models.JSONField(help_text="Every class's probability")
    review_reason = models.CharField(
        max_length=20,
        choices=ReviewReason.choices,
        blank=True,
        help_text="Why the model did not accept it automatically; empty: accepted",
    )
    worker = models.CharField(max_length=100, blank=True, help_text="The machine (WORKER_NAME) that wrote it")
    created_at = models.DateTimeField(default=timezone.now)

    objects = OutcomeQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["image", "model_version"], name="prediction_unique_image_version")
        ]

    def __str__(self) -> str:
        return f"{self.predicted_class} ({self.confidence:.0%})"

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]

    @property
    def auto_accepted(self) -> bool:
        return not self.review_reason


class FailedImage(models.Model):
    """An image a model version could not classify, and why."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="failures")
    batch_run = models.ForeignKey(BatchRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="failures")
    model_version = models.CharField(max_length=32)
    reason = models.CharField(max_length=30, choices=FailureReason.choices, db_index=True)
    detail = models.TextField(blank=True)
    worker = models.CharField(max_length=100, blank=True, help_text="The machine (WORKER_NAME) that wrote it")
    created_at = models.DateTimeField(default=timezone.now)

    objects = OutcomeQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["image", "model_version"], name="failedimage_unique_image_version")
        ]

    def __str__(self) -> str:
        return f"{self.image} failed: {self.reason}"
