"""Photos in, real model, results out: inbox -> ingest -> nightly task (django-q2) -> results, CSV, rerun."""

import csv
import io
import json
import shutil
from collections import Counter

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db.models import Count
from django_q.tasks import async_task, result

from batches import exports
from batches.models import BatchRun, FailedImage, Image, Prediction
from reviews import services as review_services
from reviews.models import ReviewItem
from tests.helpers import ACCEPTED, BAD_INPUTS, REJECTED, dev_photos

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def inbox():
    settings.INBOX_DIR.mkdir(parents=True, exist_ok=True)
    yield settings.INBOX_DIR
    shutil.rmtree(settings.INBOX_DIR, ignore_errors=True)


def fill_inbox(inbox) -> dict[str, str]:
    """60 development photos (4 per class) and every hostile file; returns {file name: true class}."""
    truth = {}
    for path, name in dev_photos("val", per_class=4):
        target = inbox / "dev" / name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        truth[path.name] = name
    shutil.copytree(BAD_INPUTS, inbox / "hostile")
    return truth


def test_the_nightly_run_classifies_the_inbox_and_a_rerun_adds_nothing(trained_model, inbox, tmp_path):
    version, classes = trained_model
    truth = fill_inbox(inbox)
    out = io.StringIO()
    call_command("ingest", stdout=out, stderr=io.StringIO())
    # Hidden files are skipped as unfinished transfers: the README and the dot-named file stay out.
    hostile = [p for p in BAD_INPUTS.iterdir() if not p.name.startswith(".") and p.name != "README.md"]
    assert Image.objects.count() == 60 + len(hostile) + 1  # + README.md, which is not a photo either
    assert "0 already registered" in out.getvalue()

    task = async_task("batches.tasks.nightly_batch", sync=True)
    run = BatchRun.objects.get(pk=result(task))
    assert run.status == BatchRun.Status.COMPLETED_WITH_FAILURES
    assert run.trigger == BatchRun.Trigger.SCHEDULE and run.model_version == version
    assert run.total == Image.objects.count()

    # Exactly one outcome per image for this version.
    predicted = set(Prediction.objects.filter(model_version=version).values_list("image__original_name", flat=True))
    failed = dict(FailedImage.objects.filter(model_version=version).values_list("image__original_name", "reason"))
    assert not predicted & set(failed)
    assert len(predicted) + len(failed) == run.total
    assert set(truth) <= predicted
    assert {name for name in ACCEPTED if not name.startswith(".")} <= predicted
    assert failed == {**{name: reason.value for name, reason in REJECTED.items()}, "README.md": "unsupported_format"}
    assert (run.n_predicted, run.n_failed) == (len(predicted), len(failed))
    assert sum(run.class_counts.values()) == run.n_predicted
    # The run's figures, as the API gives them: counts by outcome and by reason, time, speed.
    from rest_framework.test import APIClient

    from tests.helpers import make_user

    api = APIClient()
    api.force_authenticate(make_user("figures-reader", "operators"))
    figures = api.get(f"/api/runs/{run.pk}/").json()
    assert figures["failures_by_reason"] == dict(Counter(failed.values()))
    assert figures["n_predicted"] == len(predicted) and figures["images_per_second"] > 0
    assert figures["duration_seconds"] > 0

    # The real network, even trained on 8 photos per class, sorts most of them right.
    by_name = dict(Prediction.objects.values_list("image__original_name", "predicted_class"))
    correct = sum(by_name[name] == label for name, label in truth.items())
    assert correct / len(truth) > 0.6

    # Doubtful predictions wait for review, and so does the sample of accepted ones chosen for audit.
    threshold = settings.REVIEW_CONFIDENCE_THRESHOLD
    doubtful = Prediction.objects.filter(confidence__lt=threshold)
    assert doubtful.exists()
    audited = {
        p.pk
        for p in Prediction.objects.filter(confidence__gte=threshold).select_related("image")
        if review_services.audit_sampled(p.image.sha256, p.model_version)
    }
    queued = dict(ReviewItem.objects.values_list("prediction_id", "reason"))
    assert {pk for pk, reason in queued.items() if reason != "audit"} == set(doubtful.values_list("id", flat=True))
    assert {pk for pk, reason in queued.items() if reason == "audit"} == audited
    assert run.n_review == doubtful.count()  # sent to review by the model; audits are not

    rows = list(csv.DictReader(io.StringIO("".join(exports.csv_lines(exports.result_rows(run))))))
    assert len(rows) == run.total
    assert {row["outcome"] for row in rows} == {"predicted", "failed"}
    truncated = next(row for row in rows if row["original_name"] == "truncated.jpg")
    assert truncated["failure_reason"] == "truncated" and truncated["predicted_class"] == ""
    dash = next(row for row in rows if row["original_name"].endswith("leading-dash.jpg"))
    assert dash["original_name"] == "'-leading-dash.jpg"  # no formula injection into spreadsheets

    exported = tmp_path / "run.jsonl"
    call_command("export_results", "--run", str(run.pk), "--format", "jsonl", "--output", str(exported))
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [line["image_id"] for line in lines] == [int(row["image_id"]) for row in rows]

    # A rerun (schedule, button or command) finds nothing left and writes nothing.
    before = (Prediction.objects.count(), FailedImage.objects.count(), ReviewItem.objects.count())
    call_command("ingest", stdout=io.StringIO(), stderr=io.StringIO())
    rerun = BatchRun.objects.get(pk=result(async_task("batches.tasks.nightly_batch", sync=True)))
    assert rerun.total == 0 and rerun.status == BatchRun.Status.COMPLETED
    call_command("run_batch", stdout=io.StringIO(), stderr=io.StringIO())
    assert (Prediction.objects.count(), FailedImage.objects.count(), ReviewItem.objects.count()) == before
    assert not Prediction.objects.values("image", "model_version").annotate(n=Count("id")).filter(n__gt=1).exists()
