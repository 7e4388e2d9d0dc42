"""Settings come from the environment; production refuses to start without its secrets."""

import os
import subprocess
import sys

from django.conf import settings


def start(**env) -> subprocess.CompletedProcess:
    """Import the real settings in a fresh interpreter with exactly this environment."""
    clean = {"PATH": os.environ["PATH"], "VAR_DIR": str(settings.VAR_DIR), **env}
    return subprocess.run(
        [sys.executable, "-c", "import refundsite.settings as s; print(s.DATABASES['default']['ENGINE'])"],
        cwd=settings.BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
    )


def test_it_refuses_to_start_without_a_secret_key():
    result = start(ALLOWED_HOSTS="example.com")
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_it_refuses_to_start_without_allowed_hosts():
    result = start(SECRET_KEY="s3cret")
    assert result.returncode != 0 and "ALLOWED_HOSTS must be set" in result.stderr


def test_it_names_a_malformed_value():
    result = start(SECRET_KEY="s3cret", ALLOWED_HOSTS="example.com", BATCH_CHUNK_SIZE="lots")
    assert result.returncode != 0 and "BATCH_CHUNK_SIZE must be an integer" in result.stderr
    result = start(SECRET_KEY="s3cret", ALLOWED_HOSTS="example.com", REVIEW_CONFIDENCE_THRESHOLD="1.5")
    assert result.returncode != 0 and "REVIEW_CONFIDENCE_THRESHOLD must be between" in result.stderr


def test_a_fresh_checkout_defaults_to_sqlite_under_var():
    result = start(SECRET_KEY="s3cret", ALLOWED_HOSTS="example.com")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.sqlite3"


def test_debug_runs_without_secrets_for_local_development():
    assert start(DEBUG="true").returncode == 0
