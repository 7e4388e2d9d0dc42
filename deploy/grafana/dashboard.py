"""The Grafana dashboard of the refund item classifier, written with grafanalib.

`make dashboard` writes dashboards/refundsite.json (committed, provisioned by
provisioning/dashboards/refundsite.yaml); tests/site/test_monitoring.py checks that the file is
what this script makes and runs every panel's query against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard, GridPos, RowPanel, Stat, Target, Time, TimeSeries

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources/prometheus.yaml
OUTPUT = Path(__file__).resolve().parent / "dashboards" / "refundsite.json"
WEB = 'job="refundsite-web"'


def target(expr: str, legend: str = "", ref: str = "A") -> Target:
    return Target(expr=expr, legendFormat=legend, refId=ref, datasource=DATASOURCE)


def stat(title: str, expr: str, x: int, y: int, unit: str = "short", legend: str = "", w: int = 4) -> Stat:
    return Stat(
        title=title,
        dataSource=DATASOURCE,
        targets=[target(expr, legend)],
        format=unit,
        reduceCalc="lastNotNull",
        textMode="value_and_name" if legend else "value",
        gridPos=GridPos(h=4, w=w, x=x, y=y),
    )


def series(title: str, targets: list[tuple[str, str]], x: int, y: int, unit: str = "short", w: int = 12) -> TimeSeries:
    return TimeSeries(
        title=title,
        dataSource=DATASOURCE,
        targets=[target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(targets)],
        unit=unit,
        gridPos=GridPos(h=8, w=w, x=x, y=y),
    )


def row(title: str, y: int) -> RowPanel:
    return RowPanel(title=title, gridPos=GridPos(h=1, w=24, x=0, y=y))


def dashboard() -> Dashboard:
    return Dashboard(
        title="Refund item classifier",
        uid="refundsite",
        description="The night's batch run, the review queue, /predict and the serving model",
        tags=["refundsite"],
        timezone="browser",
        refresh="1m",
        time=Time("now-7d", "now"),
        panels=[
            row("The last run", 0),
            stat("Photos", f"batch_run_last_images{{{WEB}}}", 0, 1),
            stat("Failed", f"batch_run_last_failed_images{{{WEB}}}", 4, 1),
            stat("Classified", f"batch_success_rate{{{WEB}}}", 8, 1, unit="percentunit"),
            stat("Duration", f"batch_duration_seconds{{{WEB}}}", 12, 1, unit="s"),
            stat("Photos/s", f"batch_run_last_images_per_second{{{WEB}}}", 16, 1),
            stat("Sent to review", f"batch_run_last_review_images{{{WEB}}}", 20, 1),
            series(
                "Failures of the last run by reason",
                [(f"batch_run_last_failed_by_reason{{{WEB}}}", "{{reason}}")],
                0,
                5,
            ),
            series(
                "Drift of the last run (PSI against the version's baseline; alert above 0.25)",
                [(f"batch_run_last_drift_psi{{{WEB}}}", "{{kind}}")],
                12,
                5,
            ),
            row("Routing and review", 13),
            series(
                "Share auto-accepted vs sent to review (batch, per hour)",
                [
                    (
                        'sum by (route) (increase(predictions_routed_total{source="batch"}[1h]))'
                        ' / ignoring (route) group_left sum(increase(predictions_routed_total{source="batch"}[1h]))',
                        "{{route}}",
                    )
                ],
                0,
                14,
                unit="percentunit",
            ),
            series(
                "Review backlog",
                [
                    (f"review_items_waiting{{{WEB}}}", "{{status}}"),
                    (f"review_items_oldest_waiting_age_seconds{{{WEB}}} / 3600", "oldest (hours)"),
                ],
                12,
                14,
            ),
            series(
                "Predictions by class (per hour)",
                [("sum by (predicted_class) (increase(predictions_by_class_total[1h]))", "{{predicted_class}}")],
                0,
                22,
            ),
            series(
                "Audited precision of automatic decisions (95% interval's lower end) and the target",
                [
                    (f'review_audit_precision_low{{{WEB},predicted_class="all"}}', "lower end"),
                    (f"review_audit_target{{{WEB}}}", "target"),
                ],
                12,
                22,
                unit="percentunit",
            ),
            row("Serving", 30),
            series(
                "/predict requests per second",
                [('sum(rate(django_http_requests_latency_seconds_by_view_method_count{view="predict"}[5m]))', "req/s")],
                0,
                31,
                w=8,
            ),
            series(
                "/predict latency",
                [
                    (
                        "histogram_quantile(0.5, sum by (le) "
                        '(rate(django_http_requests_latency_seconds_by_view_method_bucket{view="predict"}[5m])))',
                        "p50",
                    ),
                    (
                        "histogram_quantile(0.95, sum by (le) "
                        '(rate(django_http_requests_latency_seconds_by_view_method_bucket{view="predict"}[5m])))',
                        "p95",
                    ),
                ],
                8,
                31,
                unit="s",
                w=8,
            ),
            series(
                "Serving model version (per scrape target)",
                [("max by (job, version, runtime) (model_serving_info) == 1", "{{job}}: v{{version}} {{runtime}}")],
                16,
                31,
                w=8,
            ),
            stat(
                "Days since a retrain judged a candidate",
                f"(time() - model_retrain_last_success_timestamp_seconds{{{WEB}}}) / 86400",
                0,
                47,
                w=6,
            ),
            series(
                "Volumes in use",
                [(f"storage_used_ratio{{{WEB}}}", "{{volume}}")],
                0,
                39,
                unit="percentunit",
            ),
            series(
                "Photos processed (per hour)",
                [("sum by (source, outcome) (increase(images_processed_total[1h]))", "{{source}} {{outcome}}")],
                12,
                39,
            ),
        ],
    ).auto_panel_ids()


def render() -> str:
    return json.dumps(dashboard().to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    if "--check" in sys.argv:
        sys.exit(
            0 if OUTPUT.read_text() == render() else f"{OUTPUT} is not what dashboard.py makes: run make dashboard"
        )
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
