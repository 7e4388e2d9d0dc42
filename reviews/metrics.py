"""The review backlog and the audited precision for /metrics, read from the database at scrape time."""

import logging

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)


class ReviewCollector:
    def collect(self):
        from .models import ReviewItem
        from .quality import audit_precision

        try:
            yield GaugeMetricFamily(
                "review_items_pending",
                "Predictions waiting for a first decision",
                value=ReviewItem.objects.pending().count(),
            )
            waiting = GaugeMetricFamily("review_items_waiting", "Review items waiting, by status", labels=["status"])
            for status, count in ReviewItem.objects.waiting().values_list("status").annotate(n=Count("id")).order_by():
                waiting.add_metric([status], count)
            yield waiting
            oldest = ReviewItem.objects.waiting().order_by("created_at").values_list("created_at", flat=True).first()
            yield GaugeMetricFamily(
                "review_items_oldest_waiting_age_seconds",
                "How long the oldest waiting review item has waited (0: none waits)",
                value=(timezone.now() - oldest).total_seconds() if oldest else 0,
            )
            yield from audit_gauges(audit_precision())
        except Exception:  # a scrape must answer even when the database does not
            logger.exception("cannot read the review figures for /metrics")


def audit_gauges(report: dict):
    """The audited precision of automatic decisions, per predicted class and overall (`all`)."""
    families = {
        "audited": GaugeMetricFamily(
            "review_audit_audited", "Settled audits of automatic decisions", labels=["predicted_class"]
        ),
        "precision": GaugeMetricFamily(
            "review_audit_precision", "Share of audited automatic decisions confirmed", labels=["predicted_class"]
        ),
        "low": GaugeMetricFamily(
            "review_audit_precision_low", "Lower end of its 95% Wilson interval", labels=["predicted_class"]
        ),
        "high": GaugeMetricFamily(
            "review_audit_precision_high", "Upper end of its 95% Wilson interval", labels=["predicted_class"]
        ),
    }
    for name, estimate in [("all", report["overall"]), *report["per_class"].items()]:
        if not estimate["audited"]:
            continue
        families["audited"].add_metric([name], estimate["audited"])
        for key in ("precision", "low", "high"):
            families[key].add_metric([name], estimate[key])
    yield from families.values()
    yield GaugeMetricFamily("review_audit_target", "The precision automatic decisions promise", value=report["target"])
