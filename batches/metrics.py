"""Prometheus metrics: counters updated as predictions are written (the batch engine and /predict),
figures read from the database at scrape time, and the /metrics view.

With several processes (gunicorn workers, qcluster) set PROMETHEUS_MULTIPROC_DIR: the
counters are then shared through files in that folder, which `make run` wipes at start.
Figures read from the database are collected by `DATABASE_COLLECTORS`: this app's batch-run
figures, and what other apps register there (the reviews app: its backlog).
"""

from __future__ import annotations

import hmac
import logging

from django.db.models import Count
from django.http import HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

PREDICTION_CONFIDENCE = Histogram(
    "prediction_confidence",
    "Confidence of each prediction",
    ["source"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
PREDICTIONS_BY_CLASS = Counter("predictions_by_class", "Predictions per predicted class", ["predicted_class", "source"])
IMAGES_PROCESSED = Counter("images_processed", "Images classified or failed", ["outcome", "source"])
PREDICTIONS_ROUTED = Counter(
    "predictions_routed", "Predictions accepted automatically or sent to review", ["route", "source"]
)


def record_outcomes(predictions: list, failures: list, source: str) -> None:
    for prediction in predictions:
        PREDICTION_CONFIDENCE.labels(source).observe(prediction.confidence)
        PREDICTIONS_BY_CLASS.labels(prediction.predicted_class, source).inc()
        PREDICTIONS_ROUTED.labels("review" if prediction.review_reason else "accepted", source).inc()
    if predictions:
        IMAGES_PROCESSED.labels("predicted", source).inc(len(predictions))
    for failure in failures:
        IMAGES_PROCESSED.labels(f"failed_{failure.reason}", source).inc()


# Collectors of figures read from the database at scrape time, so every process reports the same
# numbers (no description at registration: that would query the database while apps load).
DATABASE_COLLECTORS = CollectorRegistry(auto_describe=False)


class BatchRunCollector:
    """Batch-run figures: runs by status, the last run that had photos, the nightly deadline."""

    def collect(self):
        from .models import BatchRun

        try:
            runs = GaugeMetricFamily("batch_runs", "Batch runs by status", labels=["status"])
            for status, count in BatchRun.objects.values_list("status").order_by().annotate(n=Count("id")):
                runs.add_metric([status], count)
            yield runs
            last = BatchRun.objects.worked().first()
            if last is not None:
                yield from last_run_gauges(last)
            yield from nightly_gauges()
        except Exception:  # a scrape must answer even when the database does not
            logger.exception("cannot read batch figures for /metrics")


def last_run_gauges(last):
    """Figures of the last finished run that had photos (a skipped or empty night says nothing
    about speed or failures). The batch_* names are the original system's, with its meaning."""
    done = last.n_predicted + last.n_failed
    figures = [
        ("batch_run_last_images", "Images in the last finished run", last.total),
        ("batch_run_last_failed_images", "Failed images in the last finished run", last.n_failed),
        ("batch_run_last_review_images", "Images of the last finished run sent to review", last.n_review),
        ("batch_run_last_duration_seconds", "Duration of the last finished run", last.duration_seconds or 0),
        ("batch_run_last_images_per_second", "Throughput of the last finished run", last.images_per_second or 0),
        ("batch_run_last_finished_timestamp_seconds", "When the last run finished", last.finished_at.timestamp()),
        ("batch_duration_seconds", "Duration of the last batch run", last.duration_seconds or 0),
        ("batch_images_processed", "Images the last batch run classified or failed", done),
        (
            "batch_success_rate",
            "Share of the last batch run's images classified",
            last.n_predicted / done if done else 1,
        ),
    ]
    for name, documentation, value in figures:
        yield GaugeMetricFamily(name, documentation, value=value)
    drift = GaugeMetricFamily(
        "batch_run_last_drift_psi",
        "PSI of the last run's class mix and confidence against its version's baseline",
        labels=["kind"],
    )
    for kind, value in last.drift.items():
        drift.add_metric([kind], value)
    yield drift
    failed = GaugeMetricFamily(
        "batch_run_last_failed_by_reason", "Failed images of the last run by reason", labels=["reason"]
    )
    for reason, count in last.failure_counts().items():
        failed.add_metric([reason], count)
    yield failed


def nightly_gauges():
    """The dead man's switch of the nightly run: the NightlyRunLate alert fires while the last
    nightly run that finished is older than the schedule's last firing before the deadline (a
    product installed after that firing owes no run for it)."""
    from datetime import timedelta

    from croniter import croniter
    from django.conf import settings
    from django.utils import timezone

    from .models import BatchRun

    if not settings.NIGHTLY_CRON:
        return
    now = timezone.localtime()
    hour, minute = settings.NIGHTLY_DEADLINE
    deadline = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if deadline > now:
        deadline -= timedelta(days=1)
    scheduled = croniter(settings.NIGHTLY_CRON, deadline).get_prev(type(deadline))
    finished = (
        BatchRun.objects.filter(
            trigger=BatchRun.Trigger.SCHEDULE,
            status__in=[BatchRun.Status.COMPLETED, BatchRun.Status.COMPLETED_WITH_FAILURES],
        )
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    yield GaugeMetricFamily(
        "batch_nightly_deadline_timestamp_seconds", "The last NIGHTLY_DEADLINE passed", value=deadline.timestamp()
    )
    yield GaugeMetricFamily(
        "batch_nightly_scheduled_timestamp_seconds",
        "The nightly schedule's last firing before that deadline",
        value=scheduled.timestamp(),
    )
    if finished is None:  # before the first nightly run: since the product was installed
        finished = installed_at()
    yield GaugeMetricFamily(
        "batch_nightly_last_finished_timestamp_seconds",
        "When the last nightly run finished (completed, with or without failures); before the first, "
        "when the product was installed",
        value=finished.timestamp() if finished else 0,
    )


def installed_at():
    """When this app's tables were created (its first migration), or None."""
    from django.db.migrations.recorder import MigrationRecorder

    return (
        MigrationRecorder.Migration.objects.filter(app="batches", name="0001_initial")
        .values_list("applied", flat=True)
        .first()
    )


class RetrainCollector:
    """When the weekly retrain last trained and judged a candidate (the RetrainMissing alert);
    before the first, when the product was installed. Nothing when RETRAIN_CRON is empty."""

    def collect(self):
        from django.conf import settings

        from classifier.models import Retrain

        if not settings.RETRAIN_CRON:
            return
        try:
            last = (
                Retrain.objects.filter(outcome__in=[Retrain.Outcome.PROMOTED, Retrain.Outcome.REFUSED])
                .values_list("finished_at", flat=True)
                .first()
            ) or installed_at()
            yield GaugeMetricFamily(
                "model_retrain_last_success_timestamp_seconds",
                "When a retrain last trained and judged a candidate (promoted or refused); before the first, "
                "when the product was installed",
                value=last.timestamp() if last else 0,
            )
        except Exception:  # a scrape must answer even when the database does not
            logger.exception("cannot read the retrain figures for /metrics")


class StorageCollector:
    """How full the volumes of the photos and of the working files are."""

    def collect(self):
        from . import storage

        used = GaugeMetricFamily("storage_used_ratio", "Share of a volume's space in use", labels=["volume"])
        for volume, ratio in storage.used_ratios().items():
            used.add_metric([volume], ratio)
        yield used


DATABASE_COLLECTORS.register(BatchRunCollector())
DATABASE_COLLECTORS.register(RetrainCollector())
DATABASE_COLLECTORS.register(StorageCollector())


def metrics_view(request) -> HttpResponse:
    from django.conf import settings

    from classifier import inference

    refused = metrics_refusal(request, settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS)
    if refused is not None:
        return refused

    inference.refresh_model_gauge()
    if settings.PROMETHEUS_MULTIPROC_DIR:
        from prometheus_client import multiprocess

        process_registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(process_registry)
    else:
        process_registry = REGISTRY
    body = generate_latest(process_registry) + generate_latest(DATABASE_COLLECTORS)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def metrics_refusal(request, token: str, allowed_ips: list[str]) -> HttpResponse | None:
    """None when the scraper may read /metrics: from a listed address, or with the bearer token;
    open to all when neither is configured (a loopback bind)."""
    if not token and not allowed_ips:
        return None
    if allowed_ips and request.META.get("REMOTE_ADDR") in allowed_ips:
        return None
    if token:
        sent = request.headers.get("Authorization", "")
        if sent.startswith("Bearer ") and hmac.compare_digest(sent[len("Bearer ") :].encode(), token.encode()):
            return None
        response = JsonResponse(
            {"error": "unauthorized", "detail": "send Authorization: Bearer <METRICS_TOKEN>"}, status=401
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return JsonResponse({"error": "forbidden", "detail": "this address is not in METRICS_ALLOWED_IPS"}, status=403)
