"""The chunk engine: claim photos, classify them, write their outcomes; resumable at any instant.

The database is the checkpoint. A chunk is claimed in a short transaction that commits a lease
and an attempt count, classified outside any transaction, and written in one transaction that
ignores conflicts on (image, model version), queues the doubtful predictions for review and
releases the lease. While a worker holds photos, a heartbeat renews their lease (`Heartbeat`).

`classifier.inference` (and with it torch) is imported inside the functions that need it, so that
processes which fork workers never load it before the fork.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Case, DateTimeField, ExpressionWrapper, F, QuerySet, Value, When
from django.db.models.functions import Now

from classifier.imaging import FailureReason
from classifier.outcomes import Classification, Outcome

from . import metrics
from .models import BatchRun, FailedImage, Image, Prediction
from .services import chunk_size, finish_run_if_done, stop_if_failing
from .storage import photo_source

logger = logging.getLogger(__name__)

# How often a worker waiting for the database tries to reconnect.
DATABASE_RETRY_SECONDS = 1.0

# How often a worker with nothing claimable looks again while others hold the run's last photos.
LEASE_POLL_SECONDS = 1.0


class Decoding(Protocol):
    """Photos a classifier is decoding (classifier.decoding.Decoding, named here as a Protocol so that
    this module does not import torch): opaque, but for giving them up."""

    def cancel(self) -> None: ...


class ChunkClassifier(Protocol):
    """What the engine needs of a classifier (classifier.inference.Classifier; a fake in unit tests)."""

    version: str

    def start_decoding(self, sources: Sequence[str]) -> Decoding: ...

    def classify_decoding(self, decoding) -> list[Outcome]:
        """One outcome per photo of `decoding` (what start_decoding returned), in order."""
        ...


@dataclass
class ChunkResult:
    claimed: int
    predicted: int
    failed: int


@dataclass
class Chunk:
    """Claimed photos whose decoding has started."""

    ids: list[int]
    images: list[Image]
    decoding: Decoding
    retry: bool = False  # a photo whose worker died with it: processed with nothing else in flight


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
    chunk = None  # claimed, and decoding
    heartbeat = Heartbeat(run).start()
    try:
        while chunk is not None or deadline is None or time.monotonic() < deadline:
            if chunk is None:
                chunk = start_chunk(run, classifier)
                heartbeat.hold(chunk)
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
            # The next chunk (fresh photos only) is claimed and decodes while this one is written;
            # never beside a retried photo, which may crash the worker again.
            ahead = not chunk.retry and (deadline is None or time.monotonic() < deadline)
            following = start_chunk(run, classifier, retries=False) if ahead else None
            current, chunk = chunk, following
            heartbeat.hold(current, following)
            result = write_chunk(run, current, outcomes)
            heartbeat.hold(following)
            if on_chunk:
                on_chunk(result)
            if result.failed and stop_if_failing(run):
                return False
        return True
    finally:
        heartbeat.stop()
        if chunk is not None:  # stopped with a chunk claimed ahead: give it back untouched
            chunk.decoding.cancel()
            try:
                release_images(chunk.ids, failed_attempt=False)
            except DatabaseError:  # the database is gone: the lease will expire instead
                logger.warning("run %s: could not give back %s claimed photos", run.pk, len(chunk.ids))


class Heartbeat:
    """Renews the lease of the photos this worker holds every third of BATCH_LEASE_SECONDS, in a
    thread with its own database connection, so that a lease runs out only when its worker died
    (or hangs past the task's timeout, which kills it): then another worker takes the photos over
    within about one lease."""

    def __init__(self, run: BatchRun):
        self.run = run
        self.ids: list[int] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"lease-heartbeat-{run.pk}", daemon=True)

    def start(self) -> Heartbeat:
        self.thread.start()
        return self

    def hold(self, *chunks: Chunk | None) -> None:
        with self.lock:
            self.ids = [i for chunk in chunks if chunk is not None for i in chunk.ids]

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)

    def _beat(self) -> None:
        try:
            while not self.stopped.wait(settings.BATCH_LEASE_SECONDS / 3):
                with self.lock:
                    ids = list(self.ids)
                if ids:
                    self.renew(ids)
        finally:
            connection.close()

    def renew(self, ids: list[int]) -> None:
        lease_until = ExpressionWrapper(
            Now() + timedelta(seconds=settings.BATCH_LEASE_SECONDS), output_field=DateTimeField()
        )
        try:
            Image.objects.filter(pk__in=ids, lease_version=self.run.model_version, lease_until__isnull=False).update(
                lease_until=lease_until
            )
            BatchRun.objects.filter(pk=self.run.pk).update(last_activity_at=Now())
        except DatabaseError as exc:  # the database is away: the next beat tries again
            logger.warning("run %s: could not renew the lease of %s photos: %s", self.run.pk, len(ids), exc)
            connection.close()


def start_chunk(run: BatchRun, classifier: ChunkClassifier, retries: bool = True) -> Chunk | None:
    """Claim a chunk and start decoding it; None when nothing is claimable."""
    ids, retry = claim_next(run, chunk_size(run.total), retries)
    if not ids:
        return None
    images = list(Image.objects.filter(pk__in=ids).only("id", "file"))
    return Chunk(ids, images, classifier.start_decoding([photo_source(image.file.name) for image in images]), retry)


def classify_chunk(chunk: Chunk, classifier: ChunkClassifier) -> list[Outcome]:
    try:
        return classifier.classify_decoding(chunk.decoding)
    except Exception:
        release_images(chunk.ids, failed_attempt=False)
        raise


def write_chunk(run: BatchRun, chunk: Chunk, outcomes: list[Outcome]) -> ChunkResult:
    try:
        return write_outcomes(run, chunk.images, outcomes)
    except (OperationalError, InterfaceError) as exc:
        # The database went away after the photos were classified: keep the results and
        # write them once it is back, rather than classify the chunk again.
        logger.warning("run %s: database unavailable while writing a chunk (%s); waiting", run.pk, exc)
        if not wait_for_database(settings.BATCH_TASK_SECONDS):
            raise
        return write_outcomes(run, chunk.images, outcomes)


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


def write_outcomes(run: BatchRun, images: list[Image], outcomes: list[Outcome]) -> ChunkResult:
    """Write a chunk's predictions and failures in one transaction and release the lease."""
    version = run.model_version
    predictions, failures = [], []
    for image, outcome in zip(images, outcomes):
        written = {"image": image, "batch_run": run, "model_version": version, "worker": settings.WORKER_NAME}
        if isinstance(outcome, Classification):
            predictions.append(
                Prediction(
                    **written,
                    predicted_class=outcome.predicted_class,
                    confidence=outcome.confidence,
                    threshold=outcome.threshold,
                    probabilities=outcome.probabilities,
                    review_reason=outcome.review_reason or "",
                )
            )
        else:
            failures.append(FailedImage(**written, reason=outcome.reason, detail=outcome.detail))
    ids = [image.pk for image in images]
    with transaction.atomic():
        Prediction.objects.bulk_create(predictions, ignore_conflicts=True)
        FailedImage.objects.bulk_create(failures, ignore_conflicts=True)
        queue_for_review(Prediction.objects.filter(image_id__in=ids, model_version=version))
        Image.objects.filter(pk__in=ids).update(lease_until=None)
        BatchRun.objects.filter(pk=run.pk).update(last_activity_at=Now())
        transaction.on_commit(lambda: metrics.record_outcomes(predictions, failures, source="batch"))
    return ChunkResult(claimed=len(images), predicted=len(predictions), failed=len(failures))


def queue_for_review(predictions: QuerySet) -> None:
    """The one call from this app into reviews (docs/architecture.md): the doubtful predictions of a
    chunk are queued in the transaction that writes them, so none is ever written without its
    review item."""
    from reviews.services import queue_for_review

    queue_for_review(predictions)
