"""Fault injection against a real qcluster process on PostgreSQL: workers killed with SIGKILL,
a photo that kills its worker every time, two clusters at once. After each, every photo of
the run has exactly one outcome for the run's version, and the run finishes by itself.

The figures of each test (faults, photos, lost, duplicated, wall time) are printed; see
docs/reliability.md.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from batches import services
from batches.models import BatchRun, FailedImage, Image, Prediction
from tests.batches.cluster import QCluster, cluster_environment
from tests.helpers import DATASET, free_port, register_file, require_dataset

pytestmark = pytest.mark.django_db(transaction=True)

# The PostgreSQL cluster the suite runs on (Debian's pg_ctlcluster names it by version and name).
PG_VERSION, PG_CLUSTER = os.environ.get("PG_CLUSTER", "15/main").split("/")


def train_photos(count: int) -> list[Path]:
    require_dataset()
    return sorted((DATASET / "train").glob("*/*.jpg"))[:count]


def register(count: int) -> list[Image]:
    return [register_file(path) for path in train_photos(count)]


def wait_until_finished(run: BatchRun, clusters: list[QCluster], timeout: float) -> BatchRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.is_finished:
            return run
        time.sleep(0.5)
    logs = "\n---\n".join(cluster.log_tail() for cluster in clusters)
    raise AssertionError(f"run {run.pk} still {run.status} after {timeout} s: {run.counts()}\n{logs}")


def outcomes(run: BatchRun) -> dict:
    """Lost, duplicated and finished photos of a run (the invariants of docs/reliability.md)."""
    version = run.model_version
    scope = set(Image.objects.filter(batch_runs=run).values_list("id", flat=True))
    predicted = Prediction.objects.filter(image_id__in=scope, model_version=version)
    failed = FailedImage.objects.filter(image_id__in=scope, model_version=version)
    per_image: dict[int, int] = dict.fromkeys(scope, 0)
    for image_id in list(predicted.values_list("image_id", flat=True)) + list(
        failed.values_list("image_id", flat=True)
    ):
        per_image[image_id] += 1
    return {
        "photos": len(scope),
        "predicted": predicted.count(),
        "failed": dict(failed.values_list("reason").annotate(n=Count("id")).order_by()),
        "lost": sum(1 for n in per_image.values() if n == 0),
        "duplicated": sum(1 for n in per_image.values() if n > 1),
    }


@pytest.fixture
def clusters(tmp_path, trained_model, monkeypatch):
    """Start real qclusters; tasks queued meanwhile go to the database queue, not inline."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    started: list[QCluster] = []

    def start(**env) -> QCluster:
        cluster = QCluster(cluster_environment(**env), tmp_path / f"qcluster-{len(started)}.log").start()
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


def test_twenty_sigkills_of_the_worker_and_one_of_the_parent_lose_and_duplicate_nothing(clusters):
    # A new kill schedule every run; FAULT_SEED=N replays one (as far as timing allows).
    seed = int(os.environ.get("FAULT_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    images = register(2000)
    run = services.start_and_enqueue_run(BatchRun.Trigger.SCHEDULE, images)
    started = time.monotonic()
    env = {"BATCH_LEASE_SECONDS": "10", "BATCH_TASK_SECONDS": "2", "BATCH_CHUNK_SIZE": "32"}
    cluster = clusters(**env)
    kills = 0
    while kills < 20:
        worker = cluster.wait_for_busy_worker()
        time.sleep(rng.uniform(0.1, 1.0))  # somewhere in a claim, a decode, a forward pass or a write
        run.refresh_from_db()
        if run.is_finished:
            break
        if cluster.busy_worker() == worker:
            cluster.kill(worker)
            kills += 1
    # The parent alone: its worker runs on as an orphan; a new cluster is started beside it.
    worker = cluster.wait_for_busy_worker() if not run.is_finished else None
    cluster.kill(cluster.pid)
    cluster.process.wait(timeout=10)
    orphan_alive = worker is not None and worker in cluster.members()
    replacement = clusters(**env)
    run = wait_until_finished(run, [cluster, replacement], timeout=600)
    figures = outcomes(run) | {"kills": kills, "seconds": round(time.monotonic() - started, 1), "seed": seed}
    print(f"\nSIGKILL test: {figures}")
    assert kills == 20, f"the run ended after {kills} kills (seed {seed})"
    assert orphan_alive, f"the worker did not outlive its parent (seed {seed})"
    assert figures["photos"] == 2000
    assert figures["lost"] == 0 and figures["duplicated"] == 0, f"seed {seed}: {figures}"
    assert run.status in (BatchRun.Status.COMPLETED, BatchRun.Status.COMPLETED_WITH_FAILURES), f"seed {seed}"
    assert set(figures["failed"]) <= {"worker_crashed"}, f"seed {seed}: {figures}"


def test_a_photo_that_kills_its_worker_fails_alone_and_its_chunk_mates_succeed(clusters):
    images = register(40)
    poison = images[5]
    run = services.start_and_enqueue_run(BatchRun.Trigger.SCHEDULE, images)
    started = time.monotonic()
    cluster = clusters(
        BATCH_LEASE_SECONDS="10", BATCH_TASK_SECONDS="2", BATCH_CHUNK_SIZE="16", POISON_PHOTO=poison.sha256
    )
    run = wait_until_finished(run, [cluster], timeout=300)
    figures = outcomes(run) | {"seconds": round(time.monotonic() - started, 1)}
    print(f"\npoison photo test: {figures}")
    failure = FailedImage.objects.get(batch_run=run)
    assert (failure.image_id, failure.reason) == (poison.pk, "worker_crashed")
    assert figures["predicted"] == 39 and figures["lost"] == 0 and figures["duplicated"] == 0
    assert run.status == BatchRun.Status.COMPLETED_WITH_FAILURES
    assert "worker_crashed" in run.failure_counts()


def test_two_clusters_and_two_runs_over_the_same_photos_infer_each_photo_once(clusters):
    images = register(300)
    env = {"BATCH_TASK_SECONDS": "2", "BATCH_CHUNK_SIZE": "16"}
    nightly = services.start_and_enqueue_run(BatchRun.Trigger.SCHEDULE, images)
    button = services.start_and_enqueue_run(BatchRun.Trigger.BUTTON, images)
    first, second = clusters(**env), clusters(**env)
    for run in (nightly, button):
        wait_until_finished(run, [first, second], timeout=300)
    assert outcomes(nightly) == outcomes(button)
    figures = outcomes(nightly)
    assert figures["predicted"] == 300 and figures["lost"] == 0 and figures["duplicated"] == 0
    # Each photo was claimed once, by one run: nobody classified it twice.
    assert set(Image.objects.filter(pk__in=[i.pk for i in images]).values_list("attempts", flat=True)) == {1}
    written_by = Prediction.objects.filter(image__in=images).values_list("batch_run_id", flat=True)
    assert len(written_by) == 300
    shares = [list(written_by).count(run.pk) for run in (nightly, button)]
    print(f"\ntwo clusters: the nightly run wrote {shares[0]} predictions, the button run {shares[1]}")
    # A rerun after completion has nothing to do: no inference at all.
    rerun = services.start_and_enqueue_run(BatchRun.Trigger.BUTTON, images)
    rerun = wait_until_finished(rerun, [first, second], timeout=60)
    assert rerun.total == 300 and rerun.is_finished and not Prediction.objects.filter(batch_run=rerun).exists()
    assert connection.vendor == "postgresql"


def machine(tmp_path: Path, name: str, port: int) -> QCluster:
    """`manage.py workers` as on a machine of its own: it shares only PostgreSQL, the photos (and
    inbox) folder and the registry service with the others; its working files, model cache and
    metrics folder are its own. The product's lease (BATCH_LEASE_SECONDS, 60 s) and task length,
    and runs queued as the README says for two machines (BATCH_RUN_TASKS=8: each qcluster fetches
    up to 4 tasks ahead, so with fewer the first machine to poll could take them all)."""
    home = tmp_path / name
    (home / "metrics").mkdir(parents=True)
    env = cluster_environment(
        VAR_DIR=str(home / "var"),
        MODEL_CACHE_DIR=str(home / "models"),
        PROMETHEUS_MULTIPROC_DIR=str(home / "metrics"),
        WORKER_METRICS_PORT=str(port),
        WORKER_NAME=name,
        BATCH_RUN_TASKS="8",
        MLFLOW_TRACKING_URI=settings.MLFLOW_TRACKING_URI,
        MLFLOW_ARTIFACT_ROOT=settings.MLFLOW_ARTIFACT_ROOT,
    )
    for key in ("BATCH_LEASE_SECONDS", "BATCH_TASK_SECONDS", "BATCH_CHUNK_SIZE"):
        env.pop(key, None)
    return QCluster(env, tmp_path / f"{name}.log", command="workers").start()


def scraped_batch_photos(port: int) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "images_processed"
        for sample in family.samples
        if sample.name == "images_processed_total" and sample.labels.get("source") == "batch"
    )


def test_two_machines_one_killed_mid_run_every_photo_classified_once_within_a_lease(
    tmp_path, trained_model, monkeypatch
):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(settings, "BATCH_RUN_TASKS", 8)
    images = register(400)
    run = services.start_and_enqueue_run(BatchRun.Trigger.SCHEDULE, images)
    ports = {"machine-a": free_port(), "machine-b": free_port()}
    a, b = (machine(tmp_path, name, port) for name, port in ports.items())
    try:
        # Both at work: machine B has a chunk in flight (claimed, leased) when it dies.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            written = dict(Prediction.objects.filter(batch_run=run).values_list("worker").annotate(n=Count("id")))
            if written.get("machine-a") and written.get("machine-b") and b.busy_worker():
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"both machines never worked at once: {written}\n{a.log_tail()}\n{b.log_tail()}")
        in_flight = set(
            Image.objects.filter(batch_runs=run, lease_until__gt=timezone.now())
            .unresolved_for(run.model_version)
            .values_list("id", flat=True)
        )
        b.stop()  # SIGKILL to every process of machine B
        killed_at = time.monotonic()
        recovered = None
        while time.monotonic() - killed_at < 300:
            done = Prediction.objects.filter(image_id__in=in_flight, model_version=run.model_version).count()
            if done == len(in_flight):
                recovered = round(time.monotonic() - killed_at, 1)
                break
            time.sleep(0.5)
        run = wait_until_finished(run, [a], timeout=300)
        figures = outcomes(run) | {"in_flight_at_kill": len(in_flight), "recovered_seconds": recovered}
        workers = run.worker_counts()
        scraped = scraped_batch_photos(ports["machine-a"])
    finally:
        a.stop()
        b.stop()
    print(f"\ntwo machines, one killed: {figures}, by machine: {workers}, machine A's metrics: {scraped:.0f} photos")
    assert recovered is not None, f"the photos machine B held were never taken over: {figures}"
    assert figures["photos"] == figures["predicted"] == 400
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert set(workers) == {"machine-a", "machine-b"} and sum(workers.values()) == 400
    # Machine A's own metrics folder counted what it wrote, and nothing of machine B's.
    assert scraped == workers["machine-a"]
    assert run.status == BatchRun.Status.COMPLETED


def postgres(action: str, mode: str = "fast") -> None:
    command = ["pg_ctlcluster", PG_VERSION, PG_CLUSTER, action]
    if action == "stop":
        command += ["-m", mode]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def wait_for_postgres(timeout: float = 60) -> None:
    from batches.engine import wait_for_database

    assert wait_for_database(timeout), "PostgreSQL did not come back"


def test_postgres_stopped_and_started_three_times_during_a_run(clusters):
    images = register(1500)
    env = {"BATCH_LEASE_SECONDS": "10", "BATCH_TASK_SECONDS": "8", "BATCH_CHUNK_SIZE": "16"}
    run = services.start_and_enqueue_run(BatchRun.Trigger.SCHEDULE, images)
    started = time.monotonic()
    cluster = clusters(**env)
    during_the_run = 0
    for mode in ("fast", "immediate", "fast"):
        cluster.wait_for_busy_worker()
        time.sleep(1.0)
        run.refresh_from_db()
        during_the_run += not run.is_finished
        connection.close()
        postgres("stop", mode)
        time.sleep(2.0)
        postgres("start")
        wait_for_postgres()
    run = wait_until_finished(run, [cluster], timeout=300)
    log = cluster.log.read_text(errors="replace")
    figures = outcomes(run) | {
        "restarts": 3,
        "seconds": round(time.monotonic() - started, 1),
        "waits_for_the_database": log.count("database unavailable"),
    }
    print(f"\nPostgreSQL restarts: {figures}")
    assert during_the_run == 3, "the run finished before the third restart"
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["photos"] == 1500
    assert run.status in (BatchRun.Status.COMPLETED, BatchRun.Status.COMPLETED_WITH_FAILURES)
    assert cluster.process.poll() is None, "the cluster exited"
    assert figures["waits_for_the_database"] >= 1, "no outage reached the run's work"


def test_a_cluster_started_while_postgres_is_down_begins_once_it_is_up(clusters):
    images = register(100)
    run = services.start_and_enqueue_run(BatchRun.Trigger.SCHEDULE, images)
    connection.close()
    postgres("stop")
    try:
        started = time.monotonic()
        cluster = clusters(BATCH_TASK_SECONDS="8", BATCH_CHUNK_SIZE="16")
        try:  # start-up (Django, torch) alone takes seconds on a loaded machine
            exit_code = cluster.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            exit_code = None
        gave_up_after = round(time.monotonic() - started, 1)
    finally:
        postgres("start")
        wait_for_postgres()
    print(f"\ncluster started with PostgreSQL down: exit code {exit_code} after {gave_up_after} s")
    # It gives up with a failure code, for its supervisor, instead of hanging half-started.
    assert exit_code not in (None, 0), f"the cluster neither exited with a failure code nor ran:\n{cluster.log_tail()}"
    assert run.counts()["pending"] == 100
    cluster = clusters(BATCH_TASK_SECONDS="8", BATCH_CHUNK_SIZE="16")  # what the supervisor does
    run = wait_until_finished(run, [cluster], timeout=180)
    assert outcomes(run)["lost"] == 0 and run.status == BatchRun.Status.COMPLETED


def test_with_the_registry_unreachable_a_cluster_serves_the_last_known_good_copy(clusters, trained_model):
    from classifier import registry

    version, _ = trained_model
    registry.fetch_version(version)  # fetched once while the registry answered
    images = register(50)
    run = services.start_and_enqueue_run(BatchRun.Trigger.SCHEDULE, images)
    cluster = clusters(MLFLOW_TRACKING_URI="sqlite:////nonexistent/registry/mlflow.db")
    run = wait_until_finished(run, [cluster], timeout=120)
    assert run.status == BatchRun.Status.COMPLETED and run.model_version == version
    assert outcomes(run)["predicted"] == 50


def test_with_no_registry_and_no_copy_a_run_fails_before_claiming_anything(clusters, tmp_path):
    images = register(50)
    run = services.start_and_enqueue_run(BatchRun.Trigger.SCHEDULE, images)
    cluster = clusters(
        MLFLOW_TRACKING_URI="sqlite:////nonexistent/registry/mlflow.db", MODEL_CACHE_DIR=str(tmp_path / "empty")
    )
    run = wait_until_finished(run, [cluster], timeout=120)
    assert run.status == BatchRun.Status.FAILED and "cannot be loaded" in run.error
    assert not FailedImage.objects.exists() and not Prediction.objects.exists()
    assert set(Image.objects.filter(pk__in=[i.pk for i in images]).values_list("attempts", flat=True)) == {0}
