"""Settings come from the environment; production refuses to start without its secrets."""

import os
import re
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


def test_check_deploy_reports_only_what_the_readme_explains():
    """`check --deploy` with the README's production settings: the two HSTS warnings it explains."""
    env = {
        "PATH": os.environ["PATH"],
        "VAR_DIR": str(settings.VAR_DIR),
        "SECRET_KEY": "a-long-production-secret-key-made-of-many-random-characters-0123456789",
        "ALLOWED_HOSTS": "returns.example.com",
        "HTTPS": "True",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/refunds"),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = sorted(set(re.findall(r"\((\w+\.[A-Z]\d+)\)", result.stdout + result.stderr)))
    assert found == ["security.W005", "security.W021"], result.stdout + result.stderr
    readme = (settings.BASE_DIR / "README.md").read_text()
    assert "security.W005" in readme and "security.W021" in readme
