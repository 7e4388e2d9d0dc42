"""The web pages through Django's test client, with the real model and django-q2 in sync mode."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image as PILImage

from batches.models import BatchRun, Image
from tests.helpers import BAD_INPUTS, dev_photos, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(trained_model):
    client = Client()
    client.force_login(make_user("operator", "operators"))
    return client


def photo_upload(path, name=None):
    return SimpleUploadedFile(name or path.name, path.read_bytes())


def test_pages_need_a_login_and_the_right_group(trained_model):
    anonymous = Client()
    for url in ("/", "/upload/", "/runs/", "/runs/1/"):
        response = anonymous.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    stranger = Client()
    stranger.force_login(make_user("stranger"))
    assert stranger.get("/upload/").status_code == 403
    assert stranger.get("/runs/").status_code == 403


def test_upload_classifies_good_photos_and_explains_refused_ones(operator, trained_model):
    photos = dev_photos("val", per_class=1, classes=["jeans", "watches", "sunglasses"])
    files = [photo_upload(path) for path, _ in photos] + [
        photo_upload(BAD_INPUTS / "truncated.jpg"),
        photo_upload(BAD_INPUTS / "valid_control.jpg", "../../../etc/passwd.jpg"),
    ]
    response = operator.post("/upload/", {"photos": files}, follow=True)
    assert response.status_code == 200
    run = BatchRun.objects.get()
    assert response.redirect_chain[-1][0] == f"/runs/{run.pk}/"
    assert run.status == BatchRun.Status.COMPLETED and run.total == 4 and run.trigger == "button"
    page = response.content.decode()
    # The refusal is kept with the run: on its page (after any reload) and in its export.
    assert run.refused == [{"name": "truncated.jpg", "reason": "truncated", "detail": run.refused[0]["detail"]}]
    assert "Refused at upload (1)" in page and "<code>truncated</code>" in page
    assert "1 refused at upload" in operator.get(f"/runs/{run.pk}/").content.decode()
    exported = list(csv.DictReader(io.StringIO(operator.get(f"/runs/{run.pk}/results.csv").getvalue().decode())))
    assert [(r["original_name"], r["outcome"], r["failure_reason"]) for r in exported if r["outcome"] == "refused"] == [
        ("truncated.jpg", "refused", "truncated")
    ]
    assert page.count('class="predicted"') == 4
    for name in run.class_counts:
        assert name in page
    stored = Image.objects.get(original_name="passwd.jpg")
    assert stored.file.name == f"images/{stored.sha256[:2]}/{stored.sha256}.jpg"  # a generated name
    assert Image.objects.count() == 4  # the truncated file was not stored


def test_the_run_page_offers_csv_and_the_csv_has_one_row_per_photo(operator):
    photos = [photo_upload(path) for path, _ in dev_photos("val", per_class=1, classes=["belts", "wallets"])]
    operator.post("/upload/", {"photos": photos})
    run = BatchRun.objects.get()
    response = operator.get(f"/runs/{run.pk}/results.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="run-' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["outcome"] for row in rows] == ["predicted", "predicted"]
    assert all(row["predicted_class"] and float(row["confidence"]) > 0 for row in rows)
    jsonl = b"".join(operator.get(f"/runs/{run.pk}/results.jsonl").streaming_content).decode().splitlines()
    assert len(jsonl) == 2


def test_the_csv_leaves_the_final_class_empty_until_a_reviewer_decides(operator, settings):
    from reviews.models import ReviewItem
    from reviews.services import record_decision

    settings.REVIEW_CONFIDENCE_THRESHOLD = 1.01  # every prediction is doubtful
    settings.REVIEW_SECOND_OPINION_RATE = 0.0
    photos = [photo_upload(path) for path, _ in dev_photos("val", per_class=1, classes=["belts", "wallets"])]
    operator.post("/upload/", {"photos": photos})
    run = BatchRun.objects.get()

    def final_classes():
        response = operator.get(f"/runs/{run.pk}/results.csv")
        rows = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
        return {row["original_name"]: (row["review_status"], row["final_class"]) for row in rows}

    first, second = ReviewItem.objects.select_related("prediction__image").order_by("id")
    assert set(final_classes().values()) == {("pending", "")}  # still waiting: no class yet
    rita = make_user("rita", "reviewers")
    record_decision(first.pk, rita, "handbags", source="desk")
    record_decision(second.pk, rita, "none_of_our_categories", source="desk")
    first.refresh_from_db()
    if first.status == "second_opinion":  # the model was sure of its class: a second reviewer checks
        assert final_classes()[first.prediction.image.original_name] == ("second_opinion", "handbags")
        record_decision(first.pk, make_user("sam", "reviewers"), "handbags", source="desk")
    assert final_classes() == {
        first.prediction.image.original_name: ("corrected", "handbags"),
        second.prediction.image.original_name: ("none_of_our_categories", ""),
    }


def test_an_audited_automatic_decision_keeps_its_class_until_a_reviewer_corrects_it(operator, settings):
    from reviews.models import ReviewItem
    from reviews.services import record_decision

    settings.AUDIT_SAMPLE_RATE = 1.0  # every accepted photo is also checked by a reviewer
    settings.REVIEW_SECOND_OPINION_RATE = 0.0
    settings.REVIEW_CONFIDENCE_THRESHOLD = 0.0  # every prediction is accepted
    operator.post(
        "/upload/", {"photos": [photo_upload(path) for path, _ in dev_photos("val", per_class=1, classes=["belts"])]}
    )
    run = BatchRun.objects.get()
    item = ReviewItem.objects.select_related("prediction").get()
    assert item.reason == "audit"

    def row():
        response = operator.get(f"/runs/{run.pk}/results.csv")
        (only,) = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
        return only["needs_review"], only["review_reason"], only["review_status"], only["final_class"]

    assert row() == ("no", "audit", "pending", item.prediction.predicted_class)
    other = next(name for name in sorted(item.prediction.probabilities) if name != item.prediction.predicted_class)
    record_decision(item.pk, make_user("rita", "reviewers"), other, source="desk")
    # A correction of a prediction the model was sure of also waits for a second reviewer.
    state = "second_opinion" if item.prediction.confidence > 0.9 else "corrected"
    assert row() == ("no", "audit", state, other)
    page = operator.get(f"/runs/{run.pk}/").content.decode()
    assert f"auto-accepted; a reviewer says {other}" in page


def test_the_history_lists_runs_with_counts_and_model(operator):
    operator.post(
        "/upload/", {"photos": [photo_upload(p) for p, _ in dev_photos("val", per_class=2, classes=["heels"])]}
    )
    page = operator.get("/runs/").content.decode()
    run = BatchRun.objects.get()
    assert f"#{run.pk}" in page and f"v{run.model_version}" in page and "Completed" in page
    assert "0 stored photos without a result" in page


def test_classify_all_pending_starts_a_run_over_unclassified_photos(operator):
    from tests.helpers import register_file

    for path, _ in dev_photos("val", per_class=1, classes=["tops", "shirts"]):
        register_file(path)
    response = operator.post("/runs/start/", follow=True)
    run = BatchRun.objects.get()
    assert run.total == 2 and run.status == BatchRun.Status.COMPLETED
    assert response.redirect_chain[-1][0] == f"/runs/{run.pk}/"
    # Again, with every photo classified: no empty run, and the operator is told why.
    again = operator.post("/runs/start/", follow=True)
    assert BatchRun.objects.count() == 1
    assert again.redirect_chain[-1][0] == "/runs/"
    assert "Nothing to classify" in again.content.decode()


def test_thumbnails_are_reencoded_jpegs(operator):
    operator.post("/upload/", {"photos": [photo_upload(BAD_INPUTS / "jpeg_with_trailing_html.jpg")]})
    image = Image.objects.get()
    response = operator.get(f"/images/{image.pk}/thumbnail.jpg")
    assert response["Content-Type"] == "image/jpeg"
    assert b"<script" not in response.content and response.content.endswith(b"\xff\xd9")
    assert max(PILImage.open(io.BytesIO(response.content)).size) <= 160
    assert response["X-Content-Type-Options"] == "nosniff"
    assert operator.get(f"/media/{image.file.name}").status_code == 404  # stored bytes are never served


def test_the_api_starts_runs_and_reports_progress(trained_model):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(make_user("api-operator", "operators"))
    photos = [open(p, "rb") for p, _ in dev_photos("val", per_class=1, classes=["backpacks", "flip_flops"])]
    uploaded = client.post("/api/images/", {"images": photos}, format="multipart").json()
    assert len(uploaded["created"]) == 2
    run = client.post("/api/runs/", {"image_ids": uploaded["created"]}, format="json").json()
    detail = client.get(f"/api/runs/{run['id']}/").json()
    assert detail["status"] == "completed" and detail["progress"]["percent"] == 100.0
    results = client.get(f"/api/runs/{run['id']}/results/").json()["results"]
    assert [row["image_id"] for row in results] == uploaded["created"]
    nobody = APIClient()
    nobody.force_authenticate(make_user("nobody"))
    assert nobody.get("/api/runs/").status_code == 403
