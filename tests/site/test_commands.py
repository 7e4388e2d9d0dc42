"""Every management command's expected failure is one line saying what to do (a CommandError,
which manage.py prints as "CommandError: ..." without a traceback), never a traceback."""

import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from batches import services
from batches.models import BatchRun
from tests.helpers import make_user

pytestmark = pytest.mark.django_db

MISSING = "/nonexistent/folder"

# (command, arguments, words the message must contain): the failures a person runs into.
EXPECTED_FAILURES = [
    ("api_token", ["nobody"], "no user named 'nobody'"),
    ("bench", ["--photos", "0"], "--photos must be at least 1"),
    ("bench_review", ["--items", "0"], "--items must be at least 1"),
    ("bootstrap_model", ["--data", MISSING], "is not a directory"),
    ("evaluate", ["--data", MISSING], MISSING),
    ("evaluate", ["--version", "999999", "--data", MISSING], "999999"),
    ("export_results", ["--run", "999999"], "no run 999999"),
    ("export_results", ["--output", f"{MISSING}/results.csv"], "cannot write"),
    ("export_reviews", ["/proc/refund-reviews"], "cannot write to"),
    ("ingest", [MISSING], "is not a directory"),
    ("promote", ["--version", "999999"], "999999"),
    ("promote", [], "already in production"),
    ("rollback", [], "no earlier production version"),
    ("train", ["--data", MISSING], MISSING),
]


@pytest.mark.parametrize(("command", "arguments", "words"), EXPECTED_FAILURES, ids=lambda v: str(v))
def test_an_expected_failure_is_one_line(command, arguments, words, trained_model, settings):
    if command == "export_results":
        services.start_batch_run(BatchRun.Trigger.COMMAND)  # a run exists for the --output case
    with pytest.raises(CommandError) as raised:
        call_command(command, *arguments, verbosity=0)
    message = str(raised.value)
    assert words in message and "\n" not in message.strip()


def test_setup_schedules_refuses_a_cron_line_that_is_not_one(settings):
    settings.NIGHTLY_CRON = "every night"
    with pytest.raises(CommandError, match="NIGHTLY_CRON 'every night' is not a cron expression"):
        call_command("setup_schedules", verbosity=0)


def test_workers_refuses_a_metrics_port_without_a_metrics_folder_or_already_taken(settings, tmp_path):
    import socket

    settings.WORKER_METRICS_PORT = 9
    settings.PROMETHEUS_MULTIPROC_DIR = ""
    with pytest.raises(CommandError, match="WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR"):
        call_command("workers", verbosity=0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings.WORKER_METRICS_PORT = taken.getsockname()[1]
        settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
        with pytest.raises(
            CommandError, match=f"cannot serve the workers' metrics on 127.0.0.1:{settings.WORKER_METRICS_PORT}"
        ):
            call_command("workers", verbosity=0)


def test_run_batch_without_a_model_says_how_to_get_one(settings, tmp_path):
    settings.MLFLOW_TRACKING_URI = f"sqlite:///{tmp_path / 'empty.db'}"
    settings.MODEL_CACHE_DIR = tmp_path / "models"
    from classifier import inference

    inference.forget_loaded()
    with pytest.raises(CommandError, match="bootstrap_model"):
        call_command("run_batch", verbosity=0)


def test_manage_py_prints_the_line_and_no_traceback():
    result = subprocess.run(
        [sys.executable, "manage.py", "ingest", MISSING],
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"CommandError: {MISSING} is not a directory" in result.stderr


def test_api_token_prints_only_the_token(capsys):
    make_user("olga", "operators")
    call_command("api_token", "olga")
    token = capsys.readouterr().out.strip()
    assert len(token) == 40 and token.isalnum()
    call_command("api_token", "olga")
    assert capsys.readouterr().out.strip() == token  # the same token again
    call_command("api_token", "olga", "--reset")
    assert capsys.readouterr().out.strip() != token
