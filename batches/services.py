"""Batch runs: starting one pinned to the production model, handing it to the task queue,
finishing it, stopping it when it fails systemically, and resuming runs whose workers died.

The work itself (claim, classify, write) is the chunk engine's (`batches.engine`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from .models import BatchRun, BatchRunImage, FailedImage, Image, Prediction

logger = logging.getLogger(__name__)

# A failure rate is judged only once this many photos of the run have an outcome.
FAILURE_RATE_MIN_PHOTOS = 20


class NoModel(Exception):
    """No production model can be resolved: a run cannot start."""


def start_batch_run(
    trigger: str, images: Iterable[Image] | None = None, user=None, skip_empty: bool = False, refused=()
) -> BatchRun | None:
    """Create a run pinned to the current production version.

    Its scope is the given images, or every image without an outcome for that version. With
    `skip_empty`, nothing is created when there is nothing to classify (None is returned); the
    nightly run is recorded even then. `refused`: (name, ingest.Rejection) of files of the same
    upload that were not stored, kept with the run.
    """
    from classifier import inference, registry

    try:
        version, _ = inference.resolve_production()
    except inference.ModelUnavailable as exc:
        raise NoModel(str(exc)) from exc
    try:
        demo = registry.describe_version(version).demo
    except registry.RegistryUnavailable:
        demo = False  # unknown while the registry is away; the run page says which version ran
    with transaction.atomic():
        if images is None:
            ids = list(Image.objects.unresolved_for(version).values_list("id", flat=True))
        else:
            ids = sorted({image.pk for image in images})
        if skip_empty and not ids:
            return None
        run = BatchRun.objects.create(
            trigger=trigger,
            model_version=version,
            model_demo=demo,
            created_by=user,
            refused=[{"name": name, "reason": r.reason, "detail": r.detail} for name, r in refused],
        )
        BatchRunImage.objects.bulk_create([BatchRunImage(run=run, image_id=i) for i in ids], batch_size=5000)
        run.total = len(ids)
        run.save(update_fields=["total"])
    return run


def start_and_enqueue_run(
    trigger: str, images: Iterable[Image] | None = None, user=None, skip_empty: bool = False, refused=()
) -> BatchRun | None:
    """Start a run (start_batch_run) and hand it to the task queue; raises NoModel."""
    run = start_batch_run(trigger, images, user, skip_empty, refused)
    if run is not None:
        enqueue_batch_run(run)
    return run


# The smallest chunk a small run is cut into so that its progress moves (BATCH_PROGRESS_STEPS).
MIN_CHUNK = 8


def chunk_size(total: int) -> int:
    """Photos per claim for a run of `total` photos: BATCH_CHUNK_SIZE, or less for a small run so
    that it is written in about BATCH_PROGRESS_STEPS steps (of MIN_CHUNK photos at least)."""
    return min(settings.BATCH_CHUNK_SIZE, max(MIN_CHUNK, -(-total // settings.BATCH_PROGRESS_STEPS)))


def enqueue_batch_run(run: BatchRun, tasks: int | None = None) -> None:
    """Hand the run to the task queue: a few tasks, each a loop of chunks (see tasks.process_run).

    A run with nothing to do is finished at once.
    """
    if run.total == 0:
        finish_run_if_done(run)
        return
    chunks = -(-run.total // chunk_size(run.total))  # as the engine will cut the run
    for _ in range(tasks or max(1, min(chunks, settings.BATCH_RUN_TASKS))):
        queue_run_task(run.pk)


def queue_run_task(run_id: int) -> None:
    """One task of a run's work for the qcluster (inline when django-q2 runs in sync mode)."""
    from django_q.tasks import async_task

    async_task("batches.tasks.process_run", run_id, task_name=f"batch-run-{run_id}", group=f"run-{run_id}")


def stop_if_failing(run: BatchRun) -> bool:
    """Fail the run when more than BATCH_MAX_FAILURE_RATE of its photos so far failed: that is a
    systemic problem (a broken disk, a wrong decoder), not bad photos, and ploughing on would
    only write more failures. Unprocessed photos stay pending for the next run."""
    counts = run.counts()
    if counts["done"] < FAILURE_RATE_MIN_PHOTOS or counts["failed"] <= settings.BATCH_MAX_FAILURE_RATE * counts["done"]:
        return False
    reasons = ", ".join(f"{reason} {count}" for reason, count in run.failure_counts().items())
    run.mark_failed(
        f"stopped: {counts['failed']} of the first {counts['done']} photos failed "
        f"({counts['failed'] / counts['done']:.0%}, above BATCH_MAX_FAILURE_RATE "
        f"{settings.BATCH_MAX_FAILURE_RATE:.0%}): {reasons}. The other {counts['pending']} photos were left pending."
    )
    logger.error("run %s: %s", run.pk, run.error)
    return True


def finish_run_if_done(run: BatchRun) -> bool:
    """Close the run once every image in its scope has an outcome; exactly one caller wins."""
    if Image.objects.filter(batch_runs=run).unresolved_for(run.model_version).exists():
        return False
    predictions = Prediction.objects.for_run(run)
    class_counts = dict(predictions.values_list("predicted_class").annotate(n=Count("id")).order_by())
    n_failed = FailedImage.objects.for_run(run).count()
    status = BatchRun.Status.COMPLETED_WITH_FAILURES if n_failed else BatchRun.Status.COMPLETED
    won = BatchRun.objects.filter(pk=run.pk, status=BatchRun.Status.RUNNING).update(
        status=status,
        finished_at=timezone.now(),
        n_predicted=sum(class_counts.values()),
        n_failed=n_failed,
        n_review=predictions.exclude(review_reason="").count(),  # sent to review
        class_counts=class_counts,
    )
    run.refresh_from_db()
    if won:
        keep_drift(run, predictions)
    return bool(won)


def keep_drift(run: BatchRun, predictions) -> None:
    """Keep the finished run's confidence histogram and its PSI against its version's baseline
    (classifier.drift); without a baseline (an older version, the registry away) the PSI is left out."""
    from classifier import drift, registry

    histogram = drift.confidence_histogram(predictions.values_list("confidence", flat=True).iterator())
    try:
        reference = drift.version_baseline(registry.read_config(run.model_version))
    except registry.RegistryUnavailable as exc:
        logger.warning("run %s: no drift figures, the version's baseline cannot be read: %s", run.pk, exc)
        reference = None
    run.confidence_histogram = histogram
    run.drift = drift.run_drift(reference, run.class_counts, histogram)
    run.save(update_fields=["confidence_histogram", "drift"])
    if run.drifted:
        logger.warning("run %s: its photos drifted from version %s's (PSI %s)", run.pk, run.model_version, run.drift)


def skip_nightly_if_running() -> BatchRun | None:
    """The nightly schedule fired while a run it started still runs: record a skipped run in the
    history (and the log) instead of starting a second one; None when nothing runs."""
    running = BatchRun.objects.running().filter(trigger=BatchRun.Trigger.SCHEDULE).order_by("created_at").first()
    if running is None:
        return None
    note = f"skipped: the nightly run {running.pk} started at {running.created_at:%Y-%m-%d %H:%M} is still running"
    logger.warning("nightly schedule: %s", note)
    now = timezone.now()
    return BatchRun.objects.create(
        trigger=BatchRun.Trigger.SCHEDULE,
        status=BatchRun.Status.SKIPPED,
        model_version=running.model_version,
        error=note,
        created_at=now,
        last_activity_at=now,
        finished_at=now,
    )


def resume_running_runs() -> list[int]:
    """Queue work for every running run (a worker was just born: its predecessor may have died
    mid-task, taking that run's task with it). Harmless when others are at work on them."""
    running = list(BatchRun.objects.running())
    for run in running:
        enqueue_batch_run(run, tasks=1)
    return [run.pk for run in running]


def resume_stalled_runs() -> list[int]:
    """Re-queue runs whose workers went quiet for longer than a lease (a lost or killed task)."""
    quiet_since = timezone.now() - timedelta(seconds=settings.BATCH_LEASE_SECONDS)
    resumed = []
    for run in BatchRun.objects.running().filter(last_activity_at__lt=quiet_since):
        if finish_run_if_done(run):
            continue
        if Image.objects.filter(batch_runs=run).claimable_for(run.model_version).exists():
            enqueue_batch_run(run)
            resumed.append(run.pk)
    return resumed
