"""A real qcluster process for the fault-injection tests, and the means to hurt it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

BASE_DIR = Path(settings.BASE_DIR)


def cluster_environment(**extra: str) -> dict[str, str]:
    """The test's own database, folders and model registry, for a cluster in another process."""
    database = connection.settings_dict
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "PYTEST_", "DATABASE_URL"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="tests.cluster_settings",
        DATABASE_URL=f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        SECRET_KEY="tests-only-not-a-secret",
        ALLOWED_HOSTS="localhost",
        VAR_DIR=str(settings.VAR_DIR),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        INBOX_DIR=str(settings.INBOX_DIR),
        MODEL_NAME=settings.MODEL_NAME,
        MODEL_CACHE_DIR=str(settings.MODEL_CACHE_DIR),
        INFERENCE_THREADS="2",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class QCluster:
    """`manage.py qcluster` in its own process group; every process of it is found through /proc."""

    def __init__(self, env: dict[str, str], log: Path, command: str = "qcluster"):
        self.env = env
        self.log = log
        self.command = command  # or "workers": the qcluster with its own /metrics
        self.process: subprocess.Popen | None = None

    def start(self) -> QCluster:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", self.command],
                cwd=BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def members(self) -> list[int]:
        """Every live process of the cluster's process group (orphans included)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            state, pgid = fields[0], int(fields[2])
            if pgid == self.pid and state != "Z":
                found.append(int(entry.name))
        return found

    def busy_worker(self) -> int | None:
        """The worker running a task now (django-q2 titles it '... processing ...' via setproctitle)."""
        for pid in self.members():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b" processing " in title:
                return pid
        return None

    def wait_for_busy_worker(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.busy_worker()
            if pid:
                return pid
            time.sleep(0.05)
        raise AssertionError(f"no worker took a task within {timeout} s; log: {self.log_tail()}")

    def kill(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        """SIGKILL to the whole process group, orphans included."""
        if self.process is None:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while self.members() and time.monotonic() < deadline:
            time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
