"""Settings for refundsite, all read from the environment (see README: Settings).

A fresh checkout runs on the defaults: SQLite and a local MLflow store under var/,
photos under media/, CPU inference. Secrets have no usable default: unless DEBUG=True,
a missing SECRET_KEY or ALLOWED_HOSTS stops start-up.
"""

import json
import os
import socket
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def _env_number(name: str, default, convert, kind: str):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return convert(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {kind}, got {value!r}") from None


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    number = _env_number(name, default, int, "an integer")
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    return number


def env_float(name: str, default: float, minimum: float, maximum: float) -> float:
    number = _env_number(name, default, float, "a number")
    if not minimum <= number <= maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, got {number}")
    return number


def env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name) or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_json(name: str, default: dict) -> dict:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object, got {value!r}")
    return parsed


def env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


# --- Core -------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
VAR_DIR = env_path("VAR_DIR", BASE_DIR / "var")

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set (or DEBUG=True for local development)")
    SECRET_KEY = "insecure-debug-only-key"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    if not DEBUG:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set (or DEBUG=True for local development)")
    ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
CSRF_FAILURE_VIEW = "refundsite.views.csrf_failure"

# Behind TLS: secure cookies, HSTS and the redirect to https.
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
if env_bool("BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_q",
    "django_prometheus",
    "axes",
    "csp",
    # The apps build on one another: classifier <- batches <- reviews (docs/architecture.md). reviews
    # comes first because its `train` command extends the classifier's (the first app's command wins).
    "reviews",
    "batches",
    "classifier",
    "bench",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# Content-Security-Policy: scripts, styles and everything else from this site only (no inline
# script or style anywhere: page data travels in json_script blocks, which are not run); photos
# chosen for upload are previewed from blob: URLs.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "refundsite.urls"
WSGI_APPLICATION = "refundsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "classifier.context_processors.production_model",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # The web server and the qcluster write to the same file: WAL lets readers go on,
    # IMMEDIATE takes the write lock up front instead of failing half-way.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Logins: after LOGIN_FAILURE_LIMIT wrong passwords for one user name from one address, that pair
# is locked out for LOGIN_LOCKOUT_MINUTES (django-axes; each failure is recorded in the database).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
if env_bool("BEHIND_PROXY", False):
    AXES_IPWARE_PROXY_COUNT = 1  # the client's address is the proxy's X-Forwarded-For
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
LOGIN_URL = "login"
LOGOUT_REDIRECT_URL = "login"
LOGIN_REDIRECT_URL = "home"  # sends each role to its page (refundsite.views.home)

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Files --------------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Where photos are stored (batches/storage.py is the one module that reads and writes them): the
# file system under MEDIA_ROOT (a local disk, or an NFS mount shared by every machine), or any
# Django storage, e.g. S3 with django-storages: MEDIA_STORAGE_BACKEND=storages.backends.s3.S3Storage
# and MEDIA_STORAGE_OPTIONS='{"bucket_name": "returns-photos"}' (README: Several machines).
MEDIA_STORAGE_BACKEND = env_str("MEDIA_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")
MEDIA_STORAGE_OPTIONS = env_json("MEDIA_STORAGE_OPTIONS", {})
STORAGES = {
    "default": {"BACKEND": MEDIA_STORAGE_BACKEND, "OPTIONS": MEDIA_STORAGE_OPTIONS},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Photos are stored here under server-generated names and never served directly:
# pages show thumbnails re-encoded by a view.
MEDIA_ROOT = env_path("MEDIA_ROOT", BASE_DIR / "media")
MEDIA_URL = "/media/"  # no URL pattern serves it: photos reach pages only as re-encoded thumbnails
INBOX_DIR = env_path("INBOX_DIR", VAR_DIR / "inbox")
# A file changed more recently than this may still be being copied into the inbox: the next scan takes it.
INBOX_SETTLE_SECONDS = env_int("INBOX_SETTLE_SECONDS", 5, minimum=0)

MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 20 * 1024 * 1024, minimum=1024)
MAX_UPLOAD_FILES = env_int("MAX_UPLOAD_FILES", 200, minimum=1)
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 50_000_000, minimum=1024)
MIN_IMAGE_SIDE = env_int("MIN_IMAGE_SIDE", 32, minimum=1)
DATA_UPLOAD_MAX_NUMBER_FILES = MAX_UPLOAD_FILES
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024  # non-file fields and JSON bodies
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024  # larger files spool to a temporary file
FILE_UPLOAD_HANDLERS = [
    "batches.uploads.UploadSizeCap",  # nothing past MAX_UPLOAD_BYTES of a file is kept
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
FILE_UPLOAD_PERMISSIONS = 0o640

# --- Model --------------------------------------------------------------------------

MLFLOW_TRACKING_URI = env_str("MLFLOW_TRACKING_URI", f"sqlite:///{VAR_DIR / 'mlflow' / 'mlflow.db'}")
MLFLOW_ARTIFACT_ROOT = env_str("MLFLOW_ARTIFACT_ROOT", (VAR_DIR / "mlflow" / "artifacts").as_uri())
MLFLOW_EXPERIMENT = env_str("MLFLOW_EXPERIMENT", "refund-classifier")
MODEL_NAME = env_str("MODEL_NAME", "refund-classifier")
MODEL_ALIAS = env_str("MODEL_ALIAS", "production")
MLFLOW_MODEL_URI = f"models:/{MODEL_NAME}@{MODEL_ALIAS}"
MODEL_CACHE_DIR = env_path("MODEL_CACHE_DIR", VAR_DIR / "models")
# A registry that does not answer must not stall start-up for minutes (MLflow's
# defaults are 5 retries and a 120 s timeout).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# The development photo set sits in a `shared/` folder beside the checkout (or further up).
SHARED_DATASETS = next(
    (folder / "shared" / "datasets" for folder in BASE_DIR.parents if (folder / "shared" / "datasets").is_dir()),
    BASE_DIR.parent / "shared" / "datasets",
)
# Labelled folders (one or more, comma-separated): catalogue photos, and real photos of returns
# where there are some. Missing development folders are left out. (The larger catalogue set,
# refund-items-large, scores higher but sorts fewer photos by itself: docs/model.md.)
_dev = [SHARED_DATASETS / name for name in ("refund-items", "refund-items-real")]
TRAIN_DATA_DIR = env_list("TRAIN_DATA_DIR") or [str(d / "train") for d in _dev if (d / "train").is_dir()]
# Labelled photos never trained on: per-epoch accuracy in `train`, the gate of `promote`.
EVAL_DATA_DIR = env_list("EVAL_DATA_DIR") or [str(d / "val") for d in _dev if (d / "val").is_dir()]

INFERENCE_DEVICE = env_choice("INFERENCE_DEVICE", "auto", ("auto", "cpu", "cuda"))
INFERENCE_THREADS = env_int("INFERENCE_THREADS", 0, minimum=0)  # 0: one per core
INFERENCE_BATCH = env_int("INFERENCE_BATCH", 0, minimum=0)  # photos per forward pass; 0: 16 on CPU, 128 on CUDA
# How photos become tensors: "pil" one by one in threads, "torchvision" a chunk at a time (nvjpeg
# and a batched resize on a GPU); auto: torchvision on CUDA, PIL on the CPU.
INFERENCE_DECODE = env_choice("INFERENCE_DECODE", "auto", ("auto", "pil", "torchvision"))
INFERENCE_RUNTIME = env_choice(
    "INFERENCE_RUNTIME", "auto", ("auto", "torch", "onnx-int8")
)  # auto: int8 ONNX on the CPU when the version has it
# Versions trained here carry per-class auto-accept thresholds chosen at training time so that
# accepted photos reach AUTO_ACCEPT_PRECISION on held-out photos; REVIEW_CONFIDENCE_THRESHOLD
# is the fallback for versions without them (the demo model).
AUTO_ACCEPT_PRECISION = env_float("AUTO_ACCEPT_PRECISION", 0.99, 0.5, 1.0)
REVIEW_CONFIDENCE_THRESHOLD = env_float("REVIEW_CONFIDENCE_THRESHOLD", 0.80, 0.0, 1.0)

# --- Reviews ------------------------------------------------------------------------

# How long the review desk keeps an item for the reviewer it handed it to (a lease on the database
# clock); an expired claim returns the item to the pool.
REVIEW_CLAIM_SECONDS = env_int("REVIEW_CLAIM_SECONDS", 300, minimum=10)
# Share of automatically accepted predictions also queued as `audit` (chosen from the photo's hash
# and the model version, so a rerun picks the same ones): the live precision estimate.
AUDIT_SAMPLE_RATE = env_float("AUDIT_SAMPLE_RATE", 0.02, 0.0, 1.0)
# Share of reviewers' decisions sent to a second reviewer (on top of every correction of a
# prediction the model held above 0.9).
REVIEW_SECOND_OPINION_RATE = env_float("REVIEW_SECOND_OPINION_RATE", 0.05, 0.0, 1.0)

# --- Batches ------------------------------------------------------------------------

# Photos per claim; the next chunk is claimed and decodes while one is written (docs/performance.md).
BATCH_CHUNK_SIZE = env_int("BATCH_CHUNK_SIZE", 256, minimum=1)
# A smaller run is cut into about this many chunks (of 8 photos at least), so that its progress
# moves while it runs; 1: every run in chunks of BATCH_CHUNK_SIZE.
BATCH_PROGRESS_STEPS = env_int("BATCH_PROGRESS_STEPS", 10, minimum=1)
# A worker renews the lease of the photos it holds every third of it (a heartbeat), so a lease
# runs out only when its worker died: the photos are then taken over within about a lease.
BATCH_LEASE_SECONDS = env_int("BATCH_LEASE_SECONDS", 60, minimum=10)
BATCH_MAX_ATTEMPTS = env_int("BATCH_MAX_ATTEMPTS", 3, minimum=1)
# Written with each outcome, so a run's page shows which machine did its work.
WORKER_NAME = env_str("WORKER_NAME") or socket.gethostname()
BATCH_TASK_SECONDS = env_int("BATCH_TASK_SECONDS", 60, minimum=1)
# Tasks a run is queued as (never more than its chunks). Each qcluster fetches up to
# queue_limit + 2 tasks ahead, so with several machines give every machine's workers some:
# about 4 x the workers of all machines. 0: 2 x Q_WORKERS (one machine).
BATCH_RUN_TASKS = env_int("BATCH_RUN_TASKS", 0, minimum=0) or 2 * env_int("Q_WORKERS", 1, minimum=1)
# Above this share of failed photos (judged after 20 outcomes) a run stops as failed: 1.0 never stops.
BATCH_MAX_FAILURE_RATE = env_float("BATCH_MAX_FAILURE_RATE", 0.5, 0.0, 1.0)
NIGHTLY_CRON = env_str("NIGHTLY_CRON", "0 2 * * *")


def env_time_of_day(name: str, default: str) -> tuple[int, int]:
    value = os.environ.get(name) or default
    hours, _, minutes = value.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
        raise ImproperlyConfigured(f"{name} must be a time of day HH:MM, got {value!r}")
    return int(hours), int(minutes)


# The weekly retrain (reviews.tasks.weekly_retrain): cron line, empty to disable; the recipe is
# bootstrap_model's linear probe on at most this many photos per class and training folder.
RETRAIN_CRON = env_str("RETRAIN_CRON", "0 3 * * 0")
RETRAIN_MAX_PER_CLASS = env_int("RETRAIN_MAX_PER_CLASS", 400, minimum=1)

# The nightly run must have finished by this time (TIME_ZONE): the NightlyRunLate alert.
NIGHTLY_DEADLINE = env_time_of_day("NIGHTLY_DEADLINE", "06:00")

# One worker per cluster: inference already uses every core. A task is a loop of chunks
# that stops after BATCH_TASK_SECONDS and re-queues itself, so `timeout` bounds one task
# and `retry` (re-delivery of a task whose worker died) stays above
# timeout x (queue_limit + 2), as django-q2's ORM broker locks a task when it is fetched.
Q_TIMEOUT = env_int("Q_TIMEOUT", 300, minimum=30)
Q_CLUSTER = {
    "name": "refundsite",
    "orm": "default",
    "workers": env_int("Q_WORKERS", 1, minimum=1),
    "timeout": Q_TIMEOUT,
    "queue_limit": 2,
    "retry": Q_TIMEOUT * 4 + 60,
    "max_attempts": 3,
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 500,
    "recycle": 200,
    # A safety net against leaks, above the normal peak of an inference worker (1.3-1.6 GB).
    "max_rss": env_int("Q_MAX_RSS_MB", 2048, minimum=256) * 1024,
    "poll": 1,
    "label": "Task queue",
}

# --- API ----------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "refundsite.parsers.JSONParserWithDepthLimit",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Refund item classifier API",
    "DESCRIPTION": "Classify photos of returned items; start and follow batch runs.",
    "VERSION": "1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}

# Rates per user on the API's costly calls (batches.throttles): "<n>/<second|minute|hour|day>";
# empty: no limit.
API_THROTTLE_PREDICT = env_str("API_THROTTLE_PREDICT", "120/minute")
API_THROTTLE_WRITES = env_str("API_THROTTLE_WRITES", "60/minute")

# /metrics shows the review backlog and class counts: open where the server listens on loopback
# only (the default bind); in production set a bearer token, or list the scrapers' addresses.
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS")

PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")
if "PROMETHEUS_MULTIPROC_DIR" in os.environ and not PROMETHEUS_MULTIPROC_DIR:
    # Set but empty, prometheus_client would write its files into the working directory.
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]
# The qcluster serves its own /metrics on this port (0: none): its workers' counters, for a
# scraper that cannot read the web's metrics folder (another machine). `make run`: 8001.
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0, minimum=0)
WORKER_METRICS_ADDR = env_str("WORKER_METRICS_ADDR", "127.0.0.1")
PROMETHEUS_EXPORT_MIGRATIONS = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"client_errors_on_one_line": {"()": "refundsite.logs.ClientErrorsOnOneLine"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["client_errors_on_one_line"]}
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"alembic": {"level": "WARNING"}, "mlflow": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
