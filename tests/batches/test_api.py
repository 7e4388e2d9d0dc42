"""POST /predict, GET /health, GET /metrics and the API schema, with the real model."""

import io
import json
import os
import shutil

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from batches.models import BatchRun, Image
from batches.uploads import UploadSizeCap
from classifier import inference
from reviews.models import ReviewItem
from tests.helpers import BAD_INPUTS, dev_photos, make_user, register_file

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(trained_model):
    user = make_user("api-user", "operators")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


@pytest.fixture
def inbox():
    settings.INBOX_DIR.mkdir(parents=True, exist_ok=True)
    photo = dev_photos("val", per_class=1, classes=["watches"])[0][0]
    shutil.copyfile(photo, settings.INBOX_DIR / "watch.jpg")
    (settings.INBOX_DIR / "sub").mkdir(exist_ok=True)
    shutil.copyfile(photo, settings.INBOX_DIR / "sub" / "watch 2.jpg")
    yield settings.INBOX_DIR
    shutil.rmtree(settings.INBOX_DIR, ignore_errors=True)


def upload(client, *paths, names=None):
    files = [open(path, "rb") for path in paths]
    try:
        if names:
            from django.core.files.uploadedfile import SimpleUploadedFile

            files = [SimpleUploadedFile(name, f.read()) for name, f in zip(names, files)]
        return client.post("/predict", {"images": files}, format="multipart")
    finally:
        for f in files:
            f.close()


def test_it_requires_a_token_of_a_user_allowed_to_classify():
    response = APIClient().post("/predict", {"image_ids": [1]}, format="json")
    assert response.status_code == 401
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert bad.post("/predict", {"image_ids": [1]}, format="json").status_code == 401
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=make_user('stranger')).key}")
    assert stranger.post("/predict", {"image_ids": [1]}, format="json").status_code == 403


def test_it_classifies_uploaded_photos(client, trained_model):
    version, classes = trained_model
    photos = dev_photos("val", per_class=1, classes=["jeans", "sunglasses"])
    response = upload(client, *[p for p, _ in photos])
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model_version"] == version
    assert len(body["predictions"]) == 2
    for prediction in body["predictions"]:
        assert prediction["predicted_class"] in classes
        assert set(prediction["all_probabilities"]) == set(classes)
        assert prediction["confidence"] == max(prediction["all_probabilities"].values())
        # The session model keeps no thresholds of its own: the fallback decides, and says so.
        assert prediction["threshold"] == settings.REVIEW_CONFIDENCE_THRESHOLD
        assert prediction["auto_accepted"] == (prediction["confidence"] >= prediction["threshold"])


def test_it_classifies_stored_images_by_id(client):
    image = register_file(dev_photos("val", per_class=1, classes=["watches"])[0][0])
    response = client.post("/predict", {"image_ids": [image.pk]}, format="json")
    assert response.status_code == 200
    assert response.json()["predictions"][0]["input"] == str(image.pk)
    missing = client.post("/predict", {"image_ids": [image.pk + 1000]}, format="json")
    assert missing.status_code == 400 and missing.json()["error"] == "unknown_image"


def test_an_id_beyond_what_the_database_holds_is_a_400_with_a_reason(client):
    for url in ("/predict", "/api/runs/"):
        response = client.post(url, {"image_ids": [2**63]}, format="json")
        assert response.status_code == 400, (url, response.content)
        assert "image_ids" in json.dumps(response.json()), url


def test_it_classifies_inbox_files_by_path(client, inbox):
    response = client.post("/predict", {"image_paths": ["watch.jpg", "sub/watch 2.jpg"]}, format="json")
    assert response.status_code == 200, response.content
    first, second = response.json()["predictions"]
    assert first["all_probabilities"] == second["all_probabilities"]
    absolute = client.post("/predict", {"image_paths": [str(inbox / "watch.jpg")]}, format="json")
    assert absolute.status_code == 200


@pytest.mark.parametrize(
    "path",
    ["../settings.py", "sub/../../x.jpg", "/etc/passwd", "..", "", "link-out/passwd", "escape.jpg"],
)
def test_it_refuses_paths_outside_the_inbox(client, inbox, path):
    os.symlink("/etc", inbox / "link-out")
    os.symlink("/etc/hostname", inbox / "escape.jpg")
    response = client.post("/predict", {"image_paths": [path]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] in ("path_not_allowed", "invalid_request")


def test_a_missing_inbox_file_is_a_clear_400(client, inbox):
    response = client.post("/predict", {"image_paths": ["nope.jpg"]}, format="json")
    assert response.status_code == 400 and response.json()["error"] == "file_missing"


@pytest.mark.parametrize(
    "name, reason",
    [
        ("truncated.jpg", "truncated"),
        ("text_file.jpg", "unsupported_format"),
        ("zero_bytes.jpg", "empty_file"),
        ("decompression_bomb_30000x30000.png", "too_many_pixels"),
        ("one_pixel.png", "too_small"),
        ("svg_as_jpg.jpg", "unsupported_format"),
        ("animated.gif", "unsupported_format"),
    ],
)
def test_a_bad_image_is_a_400_with_its_reason(client, name, reason):
    good = dev_photos("val", per_class=1, classes=["watches"])[0][0]
    response = upload(client, good, BAD_INPUTS / name)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == reason
    assert body["errors"] == [{"index": 1, "input": name, "reason": reason, "detail": body["errors"][0]["detail"]}]


def test_hostile_names_are_only_labels(client):
    response = upload(
        client,
        BAD_INPUTS / "valid_control.jpg",
        BAD_INPUTS / "..%2F..%2Fetc%2Fpasswd.jpg",
        names=["../../../etc/passwd.jpg", "..%2F..%2Fetc%2Fpasswd.jpg"],
    )
    assert response.status_code == 200
    assert [p["input"] for p in response.json()["predictions"]] == ["passwd.jpg", "..%2F..%2Fetc%2Fpasswd.jpg"]
    assert not Image.objects.exists()  # /predict classifies; it stores nothing


def test_without_any_model_it_answers_503(client, tmp_path):
    with override_settings(MLFLOW_TRACKING_URI="http://127.0.0.1:9", MODEL_CACHE_DIR=tmp_path):
        response = upload(client, BAD_INPUTS / "valid_control.jpg")
    assert response.status_code == 503 and response.json()["error"] == "model_unavailable"


def test_health_reports_database_and_model_without_loading_it(trained_model):
    anonymous = APIClient()
    body = anonymous.get("/health").json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["model"]["loaded"] is False and body["model"]["uri"] == "models:/refund-classifier@production"
    assert inference.loaded_state()["loaded"] is False
    inference.get_classifier()
    body = anonymous.get("/health").json()
    assert body["model"]["loaded"] is True and body["model"]["version"] == trained_model[0]


def scrape() -> dict[tuple, float]:
    """/metrics (anonymous) as {(sample name, labels): value}."""
    response = APIClient().get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_metrics_are_public_and_count_what_was_classified(client):
    before = scrape()
    photos = [path for path, _ in dev_photos("val", per_class=1, classes=["jeans", "watches"])]
    classes = [p["predicted_class"] for p in upload(client, *photos).json()["predictions"]]
    BatchRun.objects.create(
        trigger="api",
        model_version="9",
        status="completed_with_failures",
        finished_at=timezone.now(),
        total=4,
        n_predicted=3,
        n_failed=1,
    )
    # A skipped night (and an empty run) after it say nothing about speed or failures.
    BatchRun.objects.create(trigger="schedule", model_version="9", status="skipped", finished_at=timezone.now())
    BatchRun.objects.create(trigger="schedule", model_version="9", status="completed", finished_at=timezone.now())
    after = scrape()

    def added(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert added("images_processed_total", outcome="predicted", source="api") == 2
    assert added("prediction_confidence_count", source="api") == 2
    assert sum(added("predictions_by_class_total", predicted_class=name, source="api") for name in set(classes)) == 2
    assert after[("model_loaded", ())] == 1
    # Read from the database at scrape time: the figures of the tables as they are.
    assert after[("batch_runs", (("status", "completed"),))] == 1
    assert after[("batch_runs", (("status", "skipped"),))] == 1
    assert after[("review_items_pending", ())] == ReviewItem.objects.pending().count()
    assert after[("batch_run_last_images", ())] == after[("batch_images_processed", ())] == 4
    assert after[("batch_success_rate", ())] == 0.75
    assert after[("storage_used_ratio", (("volume", "media"),))] > 0
    # The empty nightly run finished now: the night is not late.
    assert (
        after[("batch_nightly_last_finished_timestamp_seconds", ())]
        >= after[("batch_nightly_scheduled_timestamp_seconds", ())]
    )


def test_before_the_first_nightly_run_the_night_counts_from_the_installation(client):
    from django.db.migrations.recorder import MigrationRecorder

    installed = MigrationRecorder.Migration.objects.get(app="batches", name="0001_initial").applied
    figures = scrape()
    assert figures[("batch_nightly_last_finished_timestamp_seconds", ())] == installed.timestamp()
    # A run from the pages is not a nightly run.
    BatchRun.objects.create(trigger="button", model_version="9", status="completed", finished_at=timezone.now())
    assert scrape()[("batch_nightly_last_finished_timestamp_seconds", ())] == installed.timestamp()


def test_the_api_schema_needs_a_login(client):
    assert APIClient().get("/api/schema/").status_code == 401
    assert client.get("/api/schema/").status_code == 200


def test_an_oversized_upload_is_refused_and_only_its_first_bytes_are_kept(client, trained_model):
    with override_settings(MAX_UPLOAD_BYTES=50_000):
        big = SimpleUploadedFile("huge.jpg", b"\xff\xd8\xff" + os.urandom(400_000), content_type="image/jpeg")
        response = client.post("/predict", {"images": [big]}, format="multipart")
        assert response.status_code == 400 and response.json()["error"] == "too_large_bytes"
        # What the cap passes on to the handlers that keep the file: the limit plus one byte.
        cap = UploadSizeCap()
        cap.new_file("images", "huge.jpg", "image/jpeg", None)
        kept = io.BytesIO()
        for start in range(0, 400_000, 65_536):
            chunk = cap.receive_data_chunk(b"x" * 65_536, start)
            if chunk is not None:
                kept.write(chunk)
        assert kept.tell() == 50_001
