"""What people met first: where each role lands, error pages, limits answered with reasons, the
login lockout, request rates, the security headers, /metrics and the schema. Through HTTP (Django's
test client) on the real settings."""

import json
import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, RequestFactory
from rest_framework.authtoken.models import Token

from batches import engine
from tests.helpers import BAD_INPUTS, make_user

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def token_client(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


# --- Roles land where they can work --------------------------------------------------


def test_each_role_lands_on_its_page_after_logging_in(trained_model):
    for username, groups, staff, landing in [
        ("olga", ["operators"], False, "/upload/"),
        ("rita", ["reviewers"], True, "/admin/reviews/desk/"),
        ("lena", ["review leads"], True, "/admin/reviews/desk/"),
    ]:
        make_user(username, *groups, staff=staff, password="pw-for-tests-only")
        client = Client()
        response = client.post("/accounts/login/", {"username": username, "password": "pw-for-tests-only"})
        assert response["Location"] == "/"
        assert client.get("/")["Location"] == landing


def test_a_user_without_a_role_is_told_what_to_ask_for():
    page = logged_in(make_user("nina")).get("/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "no role yet" in text and "ask an administrator" in text.lower()
    assert 'id="nav-upload"' not in text and 'id="nav-runs"' not in text


def test_a_reviewer_without_staff_status_is_told_why_the_desk_is_closed():
    text = logged_in(make_user("rolf", "reviewers")).get("/").content.decode()
    assert "Staff status" in text


def test_the_nav_shows_only_what_the_user_may_open(trained_model):
    reviewer = logged_in(make_user("rita", "reviewers", staff=True)).get("/runs/").content.decode()
    assert 'id="nav-upload"' not in reviewer and 'id="nav-desk"' in reviewer and 'id="nav-runs"' in reviewer
    operator = logged_in(make_user("olga", "operators")).get("/runs/").content.decode()
    assert 'id="nav-upload"' in operator and 'id="nav-desk"' not in operator and 'id="nav-admin"' not in operator


# --- Error pages ---------------------------------------------------------------------


def test_error_pages_use_the_site_layout_with_a_way_back(caplog):
    client = logged_in(make_user("nina"))
    with caplog.at_level(logging.WARNING, logger="django.request"):
        forbidden = client.get("/upload/")
    assert forbidden.status_code == 403
    page = forbidden.content.decode()
    assert 'class="brand"' in page and "Back to your start page" in page and "ask an administrator" in page
    # One line in the log, with who and why, no traceback.
    record = next(r for r in caplog.records if r.getMessage().startswith("Forbidden"))
    assert record.exc_info is None and "\n" not in record.getMessage() and "user=nina" in record.getMessage()
    missing = client.get("/no/such/page/")
    assert missing.status_code == 404 and "There is nothing at /no/such/page/" in missing.content.decode()
    assert 'class="brand"' in missing.content.decode()


def test_api_errors_are_json(trained_model):
    client = token_client(make_user("olga", "operators"))
    assert client.get("/api/runs/999999/").json()["detail"]
    assert client.get("/api/nothing-here/").json() == {"error": "not_found", "detail": "nothing at /api/nothing-here/"}


def test_a_server_error_page_is_the_site_s_own(settings):
    from refundsite.views import server_error

    response = server_error(RequestFactory().get("/health"))
    assert response.status_code == 500
    response = server_error(RequestFactory().get("/runs/"))
    assert response.status_code == 500 and "Something went wrong" in response.content.decode()


# --- Limits answered with reasons ----------------------------------------------------


def too_many(count=201):
    return [SimpleUploadedFile(f"p{i}.jpg", b"x") for i in range(count)]


def test_too_many_photos_on_the_form_is_the_form_s_error(trained_model, settings):
    response = logged_in(make_user("olga", "operators")).post("/upload/", {"photos": too_many()})
    page = response.content.decode()
    assert response.status_code == 400
    assert "At most 200 photos per request." in page and 'id="upload-form"' in page


@pytest.mark.parametrize("url", ["/predict", "/api/images/"])
def test_too_many_files_on_the_api_is_json_with_the_limit(url, trained_model):
    response = token_client(make_user("olga", "operators")).post(url, {"images": too_many()})
    assert response.status_code == 400
    assert response.json() == {"error": "too_many_files", "detail": "at most 200 photos per request", "limit": 200}


@pytest.mark.parametrize("url", ["/predict", "/api/runs/"])
def test_a_json_body_over_the_limit_is_body_too_large_in_mb(url, trained_model):
    body = json.dumps({"image_ids": list(range(1, 400_000))})  # about 3 MB
    response = token_client(make_user("olga", "operators")).post(url, body, content_type="application/json")
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"] == "body_too_large" and answer["limit_mb"] == 2.0 and "2 MB" in answer["detail"]


@pytest.mark.parametrize("url", ["/predict", "/api/runs/"])
def test_json_nested_a_hundred_thousand_deep_is_a_400(url, trained_model):
    body = "[" * 100_000 + "]" * 100_000
    response = token_client(make_user("olga", "operators")).post(url, body, content_type="application/json")
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]


def test_the_upload_page_words_its_limits_in_megabytes(trained_model):
    page = logged_in(make_user("olga", "operators")).get("/upload/").content.decode()
    assert "at most 20 MB each" in page and 'data-max-bytes="20971520"' in page


def test_small_runs_are_written_in_about_ten_chunks(settings):
    settings.BATCH_CHUNK_SIZE = 256
    assert [engine.chunk_size(n) for n in (3, 23, 200, 1000, 10_000)] == [8, 8, 20, 100, 256]


# --- Hardening -----------------------------------------------------------------------


def test_wrong_passwords_lock_the_login_for_that_user(trained_model):
    make_user("olga", "operators", password="the-right-password")
    client = Client()
    answers = [
        client.post("/accounts/login/", {"username": "olga", "password": f"wrong-{i}"}).status_code for i in range(6)
    ]
    assert answers[:4] == [200] * 4 and answers[4:] == [429, 429]
    locked = client.post("/accounts/login/", {"username": "olga", "password": "the-right-password"})
    assert locked.status_code == 429 and "Too many wrong passwords" in locked.content.decode()
    # Another user from the same address is not locked out.
    make_user("oscar", "operators", password="his-password")
    assert client.post("/accounts/login/", {"username": "oscar", "password": "his-password"}).status_code == 302


def test_predict_and_writes_are_rate_limited_with_a_reason(trained_model, settings):
    settings.API_THROTTLE_PREDICT = "2/minute"
    settings.API_THROTTLE_WRITES = "1/minute"
    client = token_client(make_user("olga", "operators"))
    codes = [client.post("/predict", {}, content_type="application/json").status_code for _ in range(3)]
    assert codes == [400, 400, 429]
    assert "throttled" in client.post("/predict", {}, content_type="application/json").json()["detail"]
    photo = (BAD_INPUTS / "valid_control.jpg").read_bytes()
    first = client.post("/api/images/", {"images": [SimpleUploadedFile("a.jpg", photo)]})
    second = client.post("/api/images/", {"images": [SimpleUploadedFile("a.jpg", photo)]})
    assert (first.status_code, second.status_code) == (201, 429)
    assert client.get("/api/runs/").status_code == 200  # reading is not limited


def test_pages_carry_a_content_security_policy_without_inline_script(trained_model):
    response = logged_in(make_user("olga", "operators")).get("/upload/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    page = response.content.decode()
    assert "<script>" not in page and " onclick=" not in page and " style=" not in page


def test_metrics_need_the_token_when_one_is_set(settings):
    assert Client().get("/metrics").status_code == 200  # open by default (loopback bind)
    settings.METRICS_TOKEN = "scrape-secret"
    refused = Client().get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.5"]
    assert Client().get("/metrics").status_code == 403  # the test client is 127.0.0.1
    assert Client(REMOTE_ADDR="10.0.0.5").get("/metrics").status_code == 200


def test_the_schema_is_json_by_default_yaml_on_request_and_lists_every_endpoint():
    client = logged_in(make_user("nina"))
    schema = client.get("/api/schema/").json()
    assert {"/health", "/predict", "/api/runs/", "/api/images/", "/api/quality/"} <= set(schema["paths"])
    health = schema["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]
    assert health["schema"]["$ref"].endswith("/Health") and health["examples"]
    predict = schema["paths"]["/predict"]["post"]
    assert "200" in predict["responses"] and predict["responses"]["200"]["content"]["application/json"]["examples"]
    assert client.get("/api/schema/?format=yaml").content.startswith(b"openapi:")
