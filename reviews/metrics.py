"""The review backlog for /metrics, read from the database at scrape time."""

import logging

from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)


class ReviewCollector:
    def collect(self):
        from .models import ReviewItem

        try:
            yield GaugeMetricFamily(
                "review_items_pending", "Predictions waiting for a reviewer", value=ReviewItem.objects.pending().count()
            )
        except Exception:  # a scrape must answer even when the database does not
            logger.exception("cannot read the review backlog for /metrics")
