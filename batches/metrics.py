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


def record_outcomes(predictions: list, failures: list, source: str) -> None:
    for prediction in predictions:
        PREDICTION_CONFIDENCE.labels(source).observe(prediction.confidence)
        PREDICTIONS_BY_CLASS.labels(prediction.predicted_class, source).inc()
    if predictions:
        IMAGES_PROCESSED.labels("predicted", source).inc(len(predictions))
    for failure in failures:
        IMAGES_PROCESSED.labels(f"failed_{failure.reason}", source).inc()


# Collectors of figures read from the database at scrape time, so every process reports the same
# numbers (no description at registration: that would query the database while apps load).
DATABASE_COLLECTORS = CollectorRegistry(auto_describe=False)


class BatchRunCollector:
    """Batch-run figures."""

    def collect(self):
        from .models import BatchRun

        try:
            runs = GaugeMetricFamily("batch_runs", "Batch runs by status", labels=["status"])
            for status, count in BatchRun.objects.values_list("status").order_by().annotate(n=Count("id")):
                runs.add_metric([status], count)
            yield runs
            last = BatchRun.objects.exclude(status=BatchRun.Status.RUNNING).first()
            if last is not None:
                yield GaugeMetricFamily("batch_run_last_images", "Images in the last finished run", value=last.total)
                yield GaugeMetricFamily(
                    "batch_run_last_failed_images", "Failed images in the last finished run", value=last.n_failed
                )
                yield GaugeMetricFamily(
                    "batch_run_last_duration_seconds",
                    "Duration of the last finished run",
                    value=last.duration_seconds or 0,
                )
                yield GaugeMetricFamily(
                    "batch_run_last_images_per_second",
                    "Throughput of the last finished run",
                    value=last.images_per_second or 0,
                )
                yield GaugeMetricFamily(
                    "batch_run_last_finished_timestamp_seconds",
                    "When the last run finished",
                    value=last.finished_at.timestamp(),
                )
        except Exception:  # a scrape must answer even when the database does not
            logger.exception("cannot read batch figures for /metrics")


DATABASE_COLLECTORS.register(BatchRunCollector())


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
