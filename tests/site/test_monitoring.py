"""Monitoring for real: the alert rules pass their promtool tests, and a real Prometheus (Debian's
binary) scrapes a stack like `make run`'s (gunicorn with two workers and `manage.py workers`, on
PostgreSQL) with our scrape configuration: the counters add up across processes, every rule
evaluates without error and every metric the rules and the dashboard use has data."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.test import override_settings
from rest_framework.authtoken.models import Token

from batches import services
from batches.models import BatchRun
from reviews import services as review_services
from tests.batches.cluster import QCluster, cluster_environment
from tests.helpers import BAD_INPUTS, dev_photos, free_port, make_user, register_file, review_item

DEPLOY = Path(settings.BASE_DIR) / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "refundsite.json"

# PromQL words that are not metric names (functions, aggregations, keywords, label names in by()).
PROMQL_WORDS = {
    "abs", "absent", "and", "avg", "bool", "by", "count", "group_left", "group_right", "histogram_quantile",
    "ignoring", "increase", "le", "time", "max", "min", "on", "or", "quantile_over_time", "rate", "scalar", "sum",
    "unless", "without", "job", "version", "runtime", "route", "predicted_class", "source", "outcome",
}  # fmt: skip


def binary(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed: `make test` installs Debian's prometheus package (make prometheus)"
    return found


def test_every_alert_rule_fires_in_one_case_and_stays_quiet_in_another():
    result = subprocess.run(
        [binary("promtool"), "test", "rules", "alerts.test.yml"],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rules = [rule["alert"] for group in yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
             for rule in group["rules"]]  # fmt: skip
    tested = (PROMETHEUS_DIR / "alerts.test.yml").read_text()
    for alert in rules:
        # Each rule is evaluated at least twice: once expecting it, once expecting silence.
        assert tested.count(f"alertname: {alert}\n") >= 2, f"{alert} lacks a firing or a quiet case"
    print(f"\npromtool: {len(rules)} alert rules, {tested.count('alertname:')} evaluations passed")


def test_the_committed_dashboard_is_what_its_generator_makes():
    result = subprocess.run([sys.executable, str(DEPLOY / "grafana" / "dashboard.py"), "--check"], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def metric_selectors(expr: str) -> list[str]:
    """The metric selectors (name and label matchers) of a PromQL expression."""
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range durations
    return [
        name + (matchers or "")
        for name, matchers in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?", expr)
        if name not in PROMQL_WORDS
    ]


def test_metric_selectors_are_found_in_expressions():
    expr = 'histogram_quantile(0.95, sum by (le) (rate(x_bucket{view="predict"}[5m]))) > 5 or absent(up{job="a"})'
    assert metric_selectors(expr) == ['x_bucket{view="predict"}', 'up{job="a"}']


class Stack:
    """The web, the workers and Prometheus, each a real process on a free loopback port."""

    def __init__(self, tmp: Path, env: dict[str, str]):
        self.tmp, self.env = tmp, env
        self.web_port, self.workers_port, self.prometheus_port = free_port(), free_port(), free_port()
        self.processes: list[subprocess.Popen] = []
        self.workers: QCluster | None = None

    def start(self) -> Stack:
        (self.tmp / "web").mkdir()
        (self.tmp / "workers").mkdir()
        self.workers = QCluster(
            {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(self.tmp / "workers"),
             "WORKER_METRICS_PORT": str(self.workers_port)},
            self.tmp / "workers.log",
            command="workers",
        ).start()  # fmt: skip
        gunicorn = Path(sys.executable).parent / "gunicorn"
        self.spawn(
            [str(gunicorn), "refundsite.wsgi:application", "--config", "refundsite/gunicorn.conf.py",
             "--bind", f"127.0.0.1:{self.web_port}", "--access-logformat", "%(p)s %(m)s %(U)s %(s)s"],
            {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(self.tmp / "web"), "WEB_WORKERS": "2",
             "INFERENCE_THREADS": "1"},
            "web.log",
        )  # fmt: skip
        self.spawn(
            [binary("prometheus"), f"--config.file={self.prometheus_config()}",
             f"--storage.tsdb.path={self.tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.prometheus_port}"],
            {"PATH": os.environ["PATH"]},
            "prometheus.log",
        )  # fmt: skip
        self.wait_for(f"http://127.0.0.1:{self.web_port}/health", "web.log")
        self.wait_for(f"http://127.0.0.1:{self.workers_port}/metrics", "workers.log")
        self.wait_for(f"http://127.0.0.1:{self.prometheus_port}/-/ready", "prometheus.log")
        return self

    def prometheus_config(self) -> Path:
        """deploy/prometheus/prometheus.yml, scraping every second, with this stack's addresses and token."""
        config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        token = self.tmp / "metrics-token"
        token.write_text(self.env["METRICS_TOKEN"])
        ports = {"refundsite-web": self.web_port, "refundsite-workers": self.workers_port}
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
            if "authorization" in job:
                job["authorization"]["credentials_file"] = str(token)
        shutil.copy(PROMETHEUS_DIR / "alerts.yml", self.tmp / "alerts.yml")
        path = self.tmp / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def spawn(self, command: list[str], env: dict[str, str], log: str) -> None:
        with open(self.tmp / log, "ab") as out:
            self.processes.append(
                subprocess.Popen(
                    command, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )  # fmt: skip

    def wait_for(self, url: str, log: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url, timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"{url} did not answer in {timeout} s:\n{self.log_tail(log)}")

    def log_tail(self, log: str) -> str:
        return "\n".join((self.tmp / log).read_text(errors="replace").splitlines()[-30:])

    def query(self, expr: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.prometheus_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        answer = json.load(urllib.request.urlopen(url, timeout=10))
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for_value(self, expr: str, expected: float, timeout: float = 30) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.value(expr)
            if value is not None and abs(value - expected) < 1e-9:
                return value
            time.sleep(0.5)
        return self.value(expr)

    def rules(self) -> list[dict]:
        url = f"http://127.0.0.1:{self.prometheus_port}/api/v1/rules"
        return [rule for group in json.load(urllib.request.urlopen(url))["data"]["groups"] for rule in group["rules"]]

    def stop(self) -> None:
        for process in self.processes:
            try:
                os.killpg(process.pid, 15)
            except ProcessLookupError:
                pass
        for process in self.processes:
            process.wait(timeout=30)
        if self.workers:
            self.workers.stop()


@pytest.fixture
def stack(tmp_path, production_with_baseline, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)  # runs go to the real workers
    env = cluster_environment(
        DJANGO_SETTINGS_MODULE="refundsite.settings", ALLOWED_HOSTS="127.0.0.1", METRICS_TOKEN="scrape-token-for-tests"
    )
    running = Stack(tmp_path, env)
    try:
        yield running.start()
    finally:
        running.stop()


@pytest.mark.django_db(transaction=True)
def test_a_real_prometheus_scrapes_the_stack_and_every_rule_and_panel_has_data(stack):
    # A night: 105 photos (enough for drift figures) and one that cannot be read, classified by the workers.
    photos = [path for path, _ in dev_photos("val", per_class=7)] + [BAD_INPUTS / "truncated.jpg"]
    images = [register_file(path) for path in photos]
    run = services.start_and_enqueue_run(BatchRun.Trigger.SCHEDULE, images)
    deadline = time.monotonic() + 180
    while not run.is_finished and time.monotonic() < deadline:
        time.sleep(0.5)
        run.refresh_from_db()
    assert run.status == BatchRun.Status.COMPLETED_WITH_FAILURES, stack.workers.log_tail()

    # /predict, 12 calls four at a time, so both web workers answer some.
    token = Token.objects.create(user=make_user("scanner", "operators")).key
    predict_photos = [path for path, _ in dev_photos("val", per_class=1)][:12]

    def predict(path: Path) -> int:
        boundary = "refundsite-test-boundary"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{path.name}"\r\n'
                "Content-Type: image/jpeg\r\n\r\n"
            ).encode()
            + path.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{stack.web_port}/predict",
            data=body,
            headers={"Authorization": f"Token {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        return urllib.request.urlopen(request, timeout=60).status

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(predict, predict_photos)) == [200] * 12
    answered_by = {line.split()[0] for line in (stack.tmp / "web.log").read_text().splitlines()
                   if " POST /predict 200" in line}  # fmt: skip
    assert len(answered_by) == 2, f"one web worker answered every /predict: {answered_by}"

    # A settled audit, so the audited-precision gauges have a class.
    reviewer = make_user("rita", "reviewers", staff=True)
    audit = review_item(name="audited.jpg", reason="", predicted="tops", confidence=0.5)
    with override_settings(REVIEW_SECOND_OPINION_RATE=0.0):
        review_services.record_decision(audit.pk, reviewer, "tops", source="desk", seconds=3.0)

    # The counters add up: the workers' batch counts and both web workers' /predict counts.
    batch = stack.wait_for_value('sum(images_processed_total{job="refundsite-workers",source="batch"})', 106)
    api = stack.wait_for_value('sum(images_processed_total{job="refundsite-web",source="api"})', 12)
    routed = stack.value('sum(predictions_routed_total{job="refundsite-workers",source="batch"})')
    failed = stack.value('sum(images_processed_total{job="refundsite-workers",outcome="failed_truncated"})')
    requests = stack.value('sum(django_http_requests_latency_seconds_by_view_method_count{view="predict"})')
    assert (batch, api, routed, failed, requests) == (106, 12, 105, 1, 12)
    assert stack.value('batch_images_processed{job="refundsite-web"}') == 106
    assert stack.value("batch_success_rate") == pytest.approx(105 / 106)
    assert stack.value('batch_run_last_failed_by_reason{reason="truncated"}') == 1
    run.refresh_from_db()
    assert stack.value('batch_run_last_drift_psi{kind="classes"}') == run.drift["classes"]
    assert stack.value("batch_nightly_last_finished_timestamp_seconds") == pytest.approx(run.finished_at.timestamp())
    assert {r["metric"]["job"] for r in stack.query("up == 1")} == {"refundsite-web", "refundsite-workers"}
    served = {(r["metric"]["job"], r["metric"]["version"]) for r in stack.query("model_serving_info == 1")}
    assert served == {("refundsite-web", run.model_version), ("refundsite-workers", run.model_version)}
    time.sleep(3)  # a few more scrapes, so that rates and increases have two samples

    # Every rule evaluates cleanly and every metric it reads has data.
    rules = stack.rules()
    assert len(rules) == 12 and all(rule["health"] == "ok" for rule in rules), rules
    missing = [f"{rule['name']}: {selector}" for rule in rules for selector in metric_selectors(rule["query"])
               if not stack.query(selector)]  # fmt: skip
    assert not missing, f"selectors without data: {missing}"

    # Every dashboard panel's query returns data.
    panels = json.loads(DASHBOARD.read_text())["panels"]
    queries = [(panel["title"], t["expr"]) for panel in panels for t in panel.get("targets", []) if t.get("expr")]
    empty = [title for title, expr in queries if not stack.query(expr)]
    assert not empty, f"dashboard panels without data: {empty}"
    print(
        f"\nPrometheus {len(rules)} rules ok; {len(queries)} dashboard queries with data; "
        f"counters: batch {batch:.0f}, /predict {api:.0f} photos from {len(answered_by)} web workers"
    )
