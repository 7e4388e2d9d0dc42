"""Test settings: the real settings module, on PostgreSQL, with every folder in a temporary place."""

import os
import tempfile
from pathlib import Path

TEST_ROOT = Path(tempfile.mkdtemp(prefix="refundsite-tests-"))
os.environ.setdefault("SECRET_KEY", "tests-only-not-a-secret")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/refunds")
os.environ["VAR_DIR"] = str(TEST_ROOT / "var")
os.environ["MEDIA_ROOT"] = str(TEST_ROOT / "media")
os.environ["INBOX_DIR"] = str(TEST_ROOT / "inbox")
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

from refundsite.settings import *  # noqa: E402,F403
from refundsite.settings import Q_CLUSTER, STORAGES  # noqa: E402

Q_CLUSTER = {**Q_CLUSTER, "sync": True}  # tasks run inline, in the test's process
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
INFERENCE_THREADS = 2
STATIC_ROOT = TEST_ROOT / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
INBOX_SETTLE_SECONDS = 0  # the tests copy complete files in; tests/batches/test_inbox.py checks the wait
