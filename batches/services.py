"""Workflows of the batches app: registering photos, batch runs, and the chunk engine.

The database is the checkpoint. A chunk is claimed in a short transaction that commits
a lease and an attempt count, classified outside any transaction, and written in one
transaction that ignores conflicts on (image, model version) and releases the lease.

`classifier.inference` (and with it torch) is imported inside the functions that need it,
so that processes which fork workers never load it before the fork.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Case, Count, DateTimeField, ExpressionWrapper, F, Value, When
from django.db.models.functions import Now
from django.utils import timezone

from classifier.imaging import FailureReason, ImageRejected, clean_copy, open_photo
from reviews import services as review_services

from . import metrics
from .models import BatchRun, BatchRunImage, FailedImage, Image, Prediction
from .storage import StorageFull, TooLarge, media_path, read_capped, store_content

logger = logging.getLogger(__name__)


# --- Registering photos -------------------------------------------------------------


# Refusal code of a file that could not be stored for want of space (not the photo's fault).
STORAGE_FULL = "storage_full"


@dataclass
class Registration:
    created: list[Image] = field(default_factory=list)
    existing: list[Image] = field(default_factory=list)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # (name, reason, detail)
    unsettled: list[str] = field(default_factory=list)  # still being written: left for the next scan
    storage_full: bool = False  # the media folder filled up: the files from the first refused on were not kept

    @property
    def images(self) -> list[Image]:
        return self.created + self.existing


def register_image(stream: BinaryIO, original_name: str, source: str, strict: bool = False) -> tuple[Image, bool]:
    """Store one photo and create its Image row, keyed by the hash of the file as received;
    returns (image, created).

    The photo is decoded once here and stored re-encoded (imaging.clean_copy: no metadata,
    no trailing bytes). A file that does not decode raises ImageRejected when `strict`
    (uploads); otherwise (the inbox) it is kept as received, never served, and the batch
    records why it is unusable as a FailedImage.
    """
    try:
        data = read_capped(stream, settings.MAX_UPLOAD_BYTES)
    except TooLarge as exc:
        raise ImageRejected(FailureReason.TOO_LARGE_BYTES, f"{exc}, the limit is {settings.MAX_UPLOAD_BYTES}") from None
    sha256 = hashlib.sha256(data).hexdigest()
    known = Image.objects.filter(sha256=sha256).first()
    if known is not None:
        return known, False
    try:
        content = clean_copy(data, open_photo(data))
    except ImageRejected:
        if strict:
            raise
        content = data
    stored = store_content(content, sha256)
    return Image.objects.get_or_create(
        sha256=sha256,
        defaults={
            "file": stored.name,
            "original_name": original_name[:255],
            "source": source,
            "size_bytes": stored.size,
        },
    )


def register_uploads(files: Iterable, source: str) -> Registration:
    """Validate and store uploaded files (Django UploadedFile); bad ones are refused, not stored."""
    result = Registration()
    for upload in files:
        if result.storage_full:
            result.rejected.append((upload.name or "", STORAGE_FULL, "not stored: the media folder is full"))
            continue
        try:
            image, created = register_image(upload, upload.name or "", source, strict=True)
        except ImageRejected as exc:
            result.rejected.append((upload.name or "", exc.reason.value, exc.detail))
            continue
        except StorageFull as exc:
            logger.error("upload refused: %s", exc)
            result.storage_full = True
            result.rejected.append((upload.name or "", STORAGE_FULL, str(exc)))
            continue
        (result.created if created else result.existing).append(image)
    return result


def scan_inbox(folder: Path, unsettled: list | None = None) -> Iterable[Path]:
    """Regular files under the folder, never following symbolic links or leaving it.

    A file changed in the last INBOX_SETTLE_SECONDS may still be being copied in: it is left
    for the next scan (and listed in `unsettled`). Hidden files (a copy in progress under a
    temporary dot name, renamed when complete) are never taken.
    """
    root = folder.resolve()
    settled_before = time.time() - settings.INBOX_SETTLE_SECONDS
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            if not path.resolve().is_relative_to(root):
                continue
            if path.stat().st_mtime > settled_before:
                if unsettled is not None:
                    unsettled.append(str(path))
                continue
            yield path


def ingest_folder(folder: Path, on_file: Callable[[Path, str], None] = lambda path, outcome: None) -> Registration:
    """Register every file in a folder. Content is judged later by the batch, as for any photo:
    a file that is not a usable photo becomes a FailedImage with its reason then."""
    result = Registration()
    for path in scan_inbox(folder, result.unsettled):
        try:
            with path.open("rb") as stream:
                image, created = register_image(stream, path.name, Image.Source.INBOX)
        except ImageRejected as exc:
            result.rejected.append((str(path), exc.reason.value, exc.detail))
            on_file(path, exc.reason.value)
            continue
        except StorageFull as exc:  # the rest stays in the inbox for the next scan
            logger.error("inbox scan stopped: %s", exc)
            result.storage_full = True
            on_file(path, STORAGE_FULL)
            break
        except OSError as exc:
            result.rejected.append((str(path), "unreadable", str(exc)))
            on_file(path, "unreadable")
            continue
        (result.created if created else result.existing).append(image)
        on_file(path, "new" if created else "known")
    return result


# --- Batch runs ---------------------------------------------------------------------


class NoModel(Exception):
    """No production model can be resolved: a run cannot start."""


def start_batch_run(trigger: str, images: Iterable[Image] | None = None, user=None) -> BatchRun:
    """Create a run pinned to the current production version.

    Its scope is the given images, or every image without an outcome for that version.
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
        run = BatchRun.objects.create(trigger=trigger, model_version=version, model_demo=demo, created_by=user)
        if images is None:
            ids = list(Image.objects.unresolved_for(version).values_list("id", flat=True))
        else:
            ids = sorted({image.pk for image in images})
        BatchRunImage.objects.bulk_create([BatchRunImage(run=run, image_id=i) for i in ids], batch_size=5000)
        run.total = len(ids)
        run.save(update_fields=["total"])
    return run


def enqueue_batch_run(run: BatchRun, tasks: int | None = None) -> None:
    """Hand the run to the task queue: a few tasks, each a loop of chunks (see process_run).

    A run with nothing to do is finished at once.
    """
    from django_q.tasks import async_task

    if run.total == 0:
        finish_run_if_done(run)
        return
    chunks = -(-run.total // settings.BATCH_CHUNK_SIZE)
    for _ in range(tasks or max(1, min(chunks, settings.Q_CLUSTER["workers"] * 2))):
        async_task("batches.tasks.process_run", run.pk, task_name=f"batch-run-{run.pk}", group=f"run-{run.pk}")


@dataclass
class ChunkResult:
    claimed: int
    predicted: int
    failed: int


def process_run(
    run_id: int, budget_seconds: float | None = None, on_chunk: Callable[[ChunkResult], None] | None = None
) -> bool:
    """Process chunks of a run until nothing is claimable or the time budget is spent.

    Returns True when work may remain (the caller should come back), False when the run
    has nothing left that this worker can take.
    """
    from classifier import inference

    run = BatchRun.objects.get(pk=run_id)
    if run.is_finished:
        return False
    try:
        classifier = inference.get_classifier(run.model_version)
    except inference.ModelUnavailable as exc:
        run.mark_failed(f"model version {run.model_version} cannot be loaded: {exc}")
        logger.error("run %s failed: %s", run.pk, run.error)
        return False
    deadline = time.monotonic() + budget_seconds if budget_seconds else None
    chunk = None  # claimed, and decoding in the thread pool
    try:
        while chunk is not None or deadline is None or time.monotonic() < deadline:
            chunk = chunk or start_chunk(run, classifier)
            if chunk is None:
                if finish_run_if_done(run) or run.is_finished:
                    return False
                # What is left is leased by another worker, alive or killed: wait for its lease to
                # end (it may release its photos sooner), then take them over.
                time.sleep(LEASE_POLL_SECONDS)
                run.refresh_from_db()
                continue
            try:
                outcomes = classify_chunk(chunk, classifier)
            except Exception:
                chunk = None  # classify_chunk gave its photos back
                raise
            # The next chunk (fresh photos only) is claimed and decodes in the pool while this one
            # is written; never beside a retried photo, which may crash the worker again.
            ahead = not chunk.retry and (deadline is None or time.monotonic() < deadline)
            following = start_chunk(run, classifier, retries=False) if ahead else None
            current, chunk = chunk, following
            result = write_chunk(run, current, outcomes)
            if on_chunk:
                on_chunk(result)
            if result.failed and stop_if_failing(run):
                return False
        return True
    finally:
        if chunk is not None:  # stopped with a chunk claimed ahead: give it back untouched
            chunk.abandon()
            try:
                release_images(chunk.ids, failed_attempt=False)
            except DatabaseError:  # the database is gone: the lease will expire instead
                logger.warning("run %s: could not give back %s claimed photos", run.pk, len(chunk.ids))


# How often a worker waiting for the database tries to reconnect.
DATABASE_RETRY_SECONDS = 1.0

# How often a worker with nothing claimable looks again while others hold the run's last photos.
LEASE_POLL_SECONDS = 1.0

# A failure rate is judged only once this many photos of the run have an outcome.
FAILURE_RATE_MIN_PHOTOS = 20


def stop_if_failing(run: BatchRun) -> bool:
    """Fail the run when more than BATCH_MAX_FAILURE_RATE of its photos so far failed: that is a
    systemic problem (a broken disk, a wrong decoder), not bad photos, and ploughing on would
    only write more failures. Unprocessed photos stay pending for the next run."""
    counts = run_counts(run)
    if counts["done"] < FAILURE_RATE_MIN_PHOTOS or counts["failed"] <= settings.BATCH_MAX_FAILURE_RATE * counts["done"]:
        return False
    reasons = ", ".join(f"{reason} {count}" for reason, count in failure_counts(run).items())
    run.mark_failed(
        f"stopped: {counts['failed']} of the first {counts['done']} photos failed "
        f"({counts['failed'] / counts['done']:.0%}, above BATCH_MAX_FAILURE_RATE "
        f"{settings.BATCH_MAX_FAILURE_RATE:.0%}): {reasons}. The other {counts['pending']} photos were left pending."
    )
    logger.error("run %s: %s", run.pk, run.error)
    return True


@dataclass
class Chunk:
    """Claimed photos whose decoding has started in the classifier's thread pool."""

    ids: list[int]
    images: list[Image]
    decoding: list
    retry: bool = False  # a photo whose worker died with it: processed with nothing else in flight

    def abandon(self) -> None:
        for future in self.decoding:
            future.cancel()


def start_chunk(run: BatchRun, classifier, retries: bool = True) -> Chunk | None:
    """Claim a chunk and start decoding it; None when nothing is claimable."""
    ids, retry = claim_next(run, settings.BATCH_CHUNK_SIZE, retries)
    if not ids:
        return None
    images = list(Image.objects.filter(pk__in=ids).only("id", "file"))
    return Chunk(ids, images, classifier.start_decoding([_stored_path(image) for image in images]), retry)


def classify_chunk(chunk: Chunk, classifier) -> list:
    try:
        return classifier.classify_decoding(chunk.decoding)
    except Exception:
        release_images(chunk.ids, failed_attempt=False)
        raise


def write_chunk(run: BatchRun, chunk: Chunk, outcomes: list) -> ChunkResult:
    try:
        return write_outcomes(run, chunk.images, outcomes)
    except (OperationalError, InterfaceError) as exc:
        # The database went away after the photos were classified: keep the results and
        # write them once it is back, rather than classify the chunk again.
        logger.warning("run %s: database unavailable while writing a chunk (%s); waiting", run.pk, exc)
        if not wait_for_database(settings.BATCH_TASK_SECONDS):
            raise
        return write_outcomes(run, chunk.images, outcomes)


def process_chunk(run: BatchRun, classifier) -> ChunkResult | None:
    """Claim, classify and write one chunk; None when nothing is claimable."""
    chunk = start_chunk(run, classifier)
    if chunk is None:
        return None
    return write_chunk(run, chunk, classify_chunk(chunk, classifier))


def wait_for_database(timeout: float) -> bool:
    """Reconnect until the database answers (True) or `timeout` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        connection.close()
        try:
            connection.ensure_connection()
            return True
        except (OperationalError, InterfaceError):
            if time.monotonic() >= deadline:
                return False
            time.sleep(DATABASE_RETRY_SECONDS)


def _stored_path(image: Image) -> str:
    try:
        return str(media_path(image.file.name))
    except ValueError:
        return ""  # read_bytes reports it as missing


def claim_images(run: BatchRun, limit: int) -> list[int]:
    """Take up to `limit` claimable images of the run (see claim_next)."""
    return claim_next(run, limit)[0]


def claim_next(run: BatchRun, limit: int, retries: bool = True) -> tuple[list[int], bool]:
    """Take up to `limit` claimable images of the run in a short, committed transaction;
    returns (ids, whether they are a retry).

    1. Images whose lease expired with attempts already spent crashed or stalled a worker:
       at BATCH_MAX_ATTEMPTS they become FailedImage(worker_crashed); below it they are
       retried one at a time, so one poison photo cannot take its chunk-mates down again.
    2. Otherwise fresh images are taken, FOR UPDATE SKIP LOCKED, so concurrent workers
       never wait for each other nor take the same image.
    The lease is set on the database clock and the attempt is counted before any work,
    so a worker killed at any instant leaves a trace that the next claim sees.
    `retries=False` takes fresh images only (a chunk claimed ahead of time must not be a
    suspect: if it crashed the worker, it would take the chunk being written down with it).
    """
    version = run.model_version
    retry = False
    with transaction.atomic():
        scope = Image.objects.filter(batch_runs=run).claimable_for(version).order_by("id")
        retried = scope.filter(lease_version=version, attempts__gte=1)
        ids = []
        if retries:
            _fail_crashed(run, retried.filter(attempts__gte=settings.BATCH_MAX_ATTEMPTS))
            ids = _locked_ids(retried.filter(attempts__lt=settings.BATCH_MAX_ATTEMPTS), 1)
            retry = bool(ids)
        if not ids:
            fresh = scope.exclude(lease_version=version, attempts__gte=1)
            ids = _locked_ids(fresh, limit)
        if ids:
            lease_until = ExpressionWrapper(
                Now() + timedelta(seconds=settings.BATCH_LEASE_SECONDS), output_field=DateTimeField()
            )
            Image.objects.filter(pk__in=ids).update(
                lease_version=version,
                lease_until=lease_until,
                attempts=Case(When(lease_version=version, then=F("attempts") + 1), default=Value(1)),
            )
    return ids, retry


def _locked_ids(queryset, limit: int) -> list[int]:
    return list(queryset.select_for_update(skip_locked=True, of=("self",)).values_list("id", flat=True)[:limit])


def _fail_crashed(run: BatchRun, queryset) -> None:
    ids = _locked_ids(queryset, 1000)
    if not ids:
        return
    FailedImage.objects.bulk_create(
        [
            FailedImage(
                image_id=i,
                batch_run=run,
                model_version=run.model_version,
                reason=FailureReason.WORKER_CRASHED,
                detail=f"the worker died {settings.BATCH_MAX_ATTEMPTS} times while processing this photo",
            )
            for i in ids
        ],
        ignore_conflicts=True,
    )
    Image.objects.filter(pk__in=ids).update(lease_until=None)
    logger.warning("run %s: images %s crashed their worker %s times", run.pk, ids, settings.BATCH_MAX_ATTEMPTS)


def release_images(ids: list[int], failed_attempt: bool) -> None:
    """Give claimed images back. An error that is not the photos' fault does not count as an attempt."""
    update = {"lease_until": None}
    if not failed_attempt:
        update["attempts"] = Case(When(attempts__gt=0, then=F("attempts") - 1), default=Value(0))
    Image.objects.filter(pk__in=ids).update(**update)


def write_outcomes(run: BatchRun, images: list[Image], outcomes: list) -> ChunkResult:
    """Write a chunk's predictions and failures in one transaction and release the lease."""
    version = run.model_version
    predictions, failures = [], []
    for image, outcome in zip(images, outcomes):
        if hasattr(outcome, "predicted_class"):
            predictions.append(
                Prediction(
                    image=image,
                    batch_run=run,
                    model_version=version,
                    predicted_class=outcome.predicted_class,
                    confidence=outcome.confidence,
                    probabilities=outcome.probabilities,
                    review_reason=outcome.review_reason or "",
                )
            )
        else:
            failures.append(
                FailedImage(
                    image=image, batch_run=run, model_version=version, reason=outcome.reason, detail=outcome.detail
                )
            )
    ids = [image.pk for image in images]
    with transaction.atomic():
        Prediction.objects.bulk_create(predictions, ignore_conflicts=True)
        FailedImage.objects.bulk_create(failures, ignore_conflicts=True)
        review_services.queue_for_review(Prediction.objects.filter(image_id__in=ids, model_version=version))
        Image.objects.filter(pk__in=ids).update(lease_until=None)
        BatchRun.objects.filter(pk=run.pk).update(last_activity_at=Now())
        transaction.on_commit(lambda: metrics.record_outcomes(predictions, failures, source="batch"))
    return ChunkResult(claimed=len(images), predicted=len(predictions), failed=len(failures))


def run_counts(run: BatchRun) -> dict:
    """Progress of a run: how many of its images have an outcome for its version."""
    version = run.model_version
    predicted = Prediction.objects.filter(model_version=version, image__batch_runs=run).count()
    failed = FailedImage.objects.filter(model_version=version, image__batch_runs=run).count()
    return {
        "total": run.total,
        "predicted": predicted,
        "failed": failed,
        "done": predicted + failed,
        "pending": max(0, run.total - predicted - failed),
    }


def finish_run_if_done(run: BatchRun) -> bool:
    """Close the run once every image in its scope has an outcome; exactly one caller wins."""
    if Image.objects.filter(batch_runs=run).unresolved_for(run.model_version).exists():
        return False
    version = run.model_version
    predictions = Prediction.objects.filter(model_version=version, image__batch_runs=run)
    class_counts = dict(predictions.values_list("predicted_class").annotate(n=Count("id")).order_by())
    n_failed = FailedImage.objects.filter(model_version=version, image__batch_runs=run).count()
    n_review = review_services.pending_count(predictions)
    status = BatchRun.Status.COMPLETED_WITH_FAILURES if n_failed else BatchRun.Status.COMPLETED
    won = BatchRun.objects.filter(pk=run.pk, status=BatchRun.Status.RUNNING).update(
        status=status,
        finished_at=timezone.now(),
        n_predicted=sum(class_counts.values()),
        n_failed=n_failed,
        n_review=n_review,
        class_counts=class_counts,
    )
    run.refresh_from_db()
    return bool(won)


def resume_running_runs() -> list[int]:
    """Queue work for every running run (a worker was just born: its predecessor may have died
    mid-task, taking that run's task with it). Harmless when others are at work on them."""
    running = list(BatchRun.objects.running().values_list("pk", flat=True))
    for run in BatchRun.objects.filter(pk__in=running):
        enqueue_batch_run(run, tasks=1)
    return running


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


def failure_counts(run: BatchRun) -> dict[str, int]:
    failures = FailedImage.objects.filter(model_version=run.model_version, image__batch_runs=run)
    return dict(failures.values_list("reason").annotate(n=Count("id")).order_by("-n"))
