"""Settings, read from the environment.

Every value has a default for the embedded mode (SQLite, database broker, database
store). A bad value stops start-up with a message naming the variable and what it
accepts: a pipeline that silently falls back to a default loses data in ways that are
hard to see later.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _fail(name: str, value: str, allowed: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"Bad value for environment variable {name}={value!r}: {allowed}.")


def private_dir(name: str, path: Path) -> Path:
    """Creates `path` readable by this user only (0700), or narrows it if it exists: it holds
    the secret key and, by default, the database with its API tokens."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = path.stat()
        if status.st_mode & 0o077:
            # Narrow only a directory of our own: never a shared one such as /tmp.
            if status.st_mode & stat.S_ISVTX or status.st_uid != os.getuid():
                raise _fail(name, str(path), "a directory of this user's own is required, not a shared one")
            path.chmod(0o700)
    except OSError as exc:
        raise _fail(name, str(path), f"a directory this user can create and own is required ({exc})") from None
    return path


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise _fail(name, raw, "allowed values are 1/true/yes/on or 0/false/no/off")


def env_int(name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _fail(name, raw, f"an integer from {minimum} to {maximum} is required") from None
    if not minimum <= value <= maximum:
        raise _fail(name, raw, f"an integer from {minimum} to {maximum} is required")
    return value


def env_float(name: str, default: float, *, minimum: float, maximum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _fail(name, raw, f"a number from {minimum} to {maximum} is required") from None
    if not minimum <= value <= maximum:
        raise _fail(name, raw, f"a number from {minimum} to {maximum} is required")
    return value


def env_choice(name: str, default: str, allowed: dict[str, str | None]) -> str:
    """`allowed` maps each accepted value to None, or to the reason it cannot be used yet."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    usable = ", ".join(sorted(k for k, why in allowed.items() if why is None))
    if value not in allowed:
        raise _fail(name, raw, f"allowed values are: {usable}")
    if allowed[value] is not None:
        raise _fail(name, raw, f"{allowed[value]}; allowed values are: {usable}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_fault_injection(name: str) -> tuple[str, float] | None:
    """The crash tests' "<point>:<seconds>" (see queueing/faults.py); a typo would otherwise
    surface only at a worker's first batch, or never, and the test would prove nothing."""
    from queueing.faults import POINTS  # the one list of points; that module imports no models

    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    allowed = f"use <point>:<seconds>, the point one of {', '.join(sorted(POINTS))}, the seconds from 0 to 3600"
    point, colon, seconds = raw.strip().partition(":")
    if point not in POINTS or not colon:
        raise _fail(name, raw, allowed)
    try:
        pause = float(seconds)
    except ValueError:
        raise _fail(name, raw, allowed) from None
    if not 0 <= pause <= 3600:  # also refuses nan
        raise _fail(name, raw, allowed)
    return point, pause


def database_from_url(name: str, default: str) -> dict:
    """Parses DATABASE_URL with dj-database-url (sqlite:///relative/or//absolute/path or
    mysql://user:pass@host:port/db), then sets what this project needs of each engine."""
    raw = os.environ.get(name) or default
    allowed = "use sqlite:///path/to/file.sqlite3 or mysql://user:password@host:port/database"
    try:
        config = dj_database_url.parse(raw)
    except dj_database_url.UnknownSchemeError:
        raise _fail(name, raw, allowed) from None
    except (dj_database_url.ParseError, ValueError):
        raise _fail(name, raw, "the port must be a number: mysql://user:pass@host:3306/db") from None
    timeout = env_float("DATABASE_TIMEOUT_SECONDS", 20.0, minimum=0.05, maximum=600.0)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        if config["NAME"] in ("", ":memory:"):  # what dj-database-url makes of a URL without a file
            raise _fail(name, raw, "a SQLite URL needs a file: sqlite:///var/tracardi.sqlite3")
        path = BASE_DIR / config["NAME"]  # a relative path is the project's; an absolute one stays
        return {
            "ENGINE": "tracardi_site.sqlite",
            "NAME": str(path),
            # Reused across requests: opening a connection runs the PRAGMAs below each time.
            "CONN_MAX_AGE": None,
            "OPTIONS": {
                # WAL lets readers run beside the one writer; IMMEDIATE takes the write
                # lock at BEGIN so two writers never deadlock on a lock upgrade; NORMAL
                # because the engine syncs every commit itself, outside the write lock
                # (tracardi_site/sqlite/base.py): what /track confirmed survives a power cut too.
                "timeout": timeout,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "TEST": {"NAME": str(path.with_name(path.stem + "-test" + path.suffix))},
        }
    if config["ENGINE"] == "django.db.backends.mysql":
        if not config["NAME"].strip("/"):
            raise _fail(name, raw, "a MySQL URL needs a database name: mysql://user:pass@host:3306/db")
        return {
            **config,
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
            "NAME": config["NAME"].strip("/"),
            "HOST": config["HOST"] or "127.0.0.1",
            "PORT": str(config["PORT"] or 3306),
            "OPTIONS": {
                **config.get("OPTIONS", {}),
                "charset": "utf8mb4",
                "connect_timeout": int(max(timeout, 1)),
                "isolation_level": "read committed",
            },
            "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_bin"},
        }
    raise _fail(name, raw, allowed)


VAR_DIR = private_dir("VAR_DIR", Path(os.environ.get("VAR_DIR") or BASE_DIR / "var"))


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    # Zero setup on a laptop: generate one key and keep it, so sessions survive restarts.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        # Written 0600 from the start, then linked into place: processes starting together
        # all end up with the one key that got there first, and never read a half-written one.
        draft = VAR_DIR / f"secret_key.{os.getpid()}"
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, key_file)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return key_file.read_text().strip()


# Prometheus multiprocess mode: every process writes its samples to files here, and
# /metrics adds them up. One subdirectory per owner, each emptied when its owner starts
# (gunicorn.conf.py: api/, run_workers: workers/); a process started on its own (a
# `run_worker` pod, manage.py commands) writes to standalone/. Set before any module
# imports prometheus_client, which picks its storage at import time.
METRICS_DIR = private_dir("METRICS_DIR", Path(os.environ.get("METRICS_DIR") or VAR_DIR / "metrics"))
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(private_dir("METRICS_DIR", METRICS_DIR / "standalone")))
# /metrics computes the backlog gauges from the broker at most this often (seconds).
METRICS_BACKLOG_CACHE_SECONDS = env_float("METRICS_BACKLOG_CACHE_SECONDS", 5.0, minimum=0.0, maximum=300.0)
# /readyz: how long each check may take before it counts as failed.
READYZ_TIMEOUT_SECONDS = env_float("READYZ_TIMEOUT_SECONDS", 2.0, minimum=0.1, maximum=30.0)

# --- Django -------------------------------------------------------------------------

SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "console",  # first: its admin templates extend the admin's
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "tracking",
    "queueing",
    "storage",
    "workflows",
]

MIDDLEWARE = [
    "tracking.middleware.ProcessTimeMiddleware",
    "tracking.middleware.RequestIdMiddleware",
    # POST /track is answered here, without the middleware below it (tracking/middleware.py).
    "tracking.middleware.TrackFastPathMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "tracardi_site.middleware.ContentSecurityPolicyMiddleware",
    # Serves the admin's static files from gunicorn, so the laptop run needs no web server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# HTML pages only (tracardi_site/middleware.py). The admin and the console have no inline
# script or style: their own go in static files.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)
# The API documentation pages only (/api/docs/, /api/redoc/; tracardi_site/middleware.py
# with_policy): Redoc injects <style> elements and both use data: images. No inline script.
API_DOCS_CONTENT_SECURITY_POLICY = (
    CONTENT_SECURITY_POLICY + "; style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:"
)

# HTTPS: served over TLS, directly or behind a proxy that terminates it. Browsers then get
# HSTS (only on HTTPS responses: SecurityMiddleware sends it on secure requests only) and
# the cookies are marked Secure.
HTTPS = env_bool("HTTPS", False)
# Behind a proxy the request reaching gunicorn is plain HTTP; the proxy says what the client
# used in this header (e.g. X-Forwarded-Proto: https). Trust it only if the proxy always sets
# it: a client could send it too.
_proxy_header = env_str("SECURE_PROXY_SSL_HEADER", "").strip()
if _proxy_header and not re.fullmatch(r"[A-Za-z0-9-]+", _proxy_header):
    raise _fail("SECURE_PROXY_SSL_HEADER", _proxy_header, "a header name such as X-Forwarded-Proto is required")
SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https") if _proxy_header else None
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0, maximum=2 * 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS

ROOT_URLCONF = "tracardi_site.urls"
WSGI_APPLICATION = "tracardi_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {"default": database_from_url("DATABASE_URL", f"sqlite:///{VAR_DIR / 'tracardi.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so an anonymous caller gets 401 with WWW-Authenticate, not 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# OpenAPI 3 (/api/schema/), with Swagger UI and Redoc served from drf-spectacular-sidecar's
# static files: no CDN, so the pages work offline and under the CSP.
SPECTACULAR_SETTINGS = {
    "TITLE": "Tracardi-style event collection API",
    "DESCRIPTION": "POST /track for websites and apps; the staff APIs (backlog, profile deletion); health checks.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The schema is public (like /track); the staff endpoints in it still need a token.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "tracking.schema.require_track_body"],
}


# --- Pipeline -----------------------------------------------------------------------

QUEUE_BACKEND = env_choice("QUEUE_BACKEND", "database", {"database": None, "pulsar": None})
STORE_BACKEND = env_choice("STORE_BACKEND", "database", {"database": None, "elasticsearch": None})
PULSAR_SERVICE_URL = env_str("PULSAR_SERVICE_URL", "pulsar://127.0.0.1:6650")
PULSAR_ADMIN_URL = env_str("PULSAR_ADMIN_URL", "http://127.0.0.1:8080").rstrip("/")
PULSAR_TIMEOUT_SECONDS = env_float("PULSAR_TIMEOUT_SECONDS", 5.0, minimum=0.5, maximum=300.0)
ELASTICSEARCH_URL = env_list("ELASTICSEARCH_URL", ["http://127.0.0.1:9200"])
ELASTICSEARCH_TIMEOUT_SECONDS = env_float("ELASTICSEARCH_TIMEOUT_SECONDS", 10.0, minimum=0.5, maximum=300.0)
ELASTICSEARCH_SHARDS = env_int("ELASTICSEARCH_SHARDS", 1, minimum=1, maximum=1024)
ELASTICSEARCH_REPLICAS = env_int("ELASTICSEARCH_REPLICAS", 1, minimum=0, maximum=16)
for _name, _url, _schemes in (
    ("PULSAR_SERVICE_URL", PULSAR_SERVICE_URL, ("pulsar", "pulsar+ssl")),
    ("PULSAR_ADMIN_URL", PULSAR_ADMIN_URL, ("http", "https")),
    *(("ELASTICSEARCH_URL", _es, ("http", "https")) for _es in ELASTICSEARCH_URL),
):
    if urlparse(_url).scheme not in _schemes or not urlparse(_url).hostname:
        raise _fail(
            _name, _url, f"a URL starting with {' or '.join(s + '://' for s in _schemes)} and a host is required"
        )
TENANT = env_str("TENANT", "tracardi")
if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", TENANT):
    raise _fail("TENANT", TENANT, "use 1-63 lower-case letters, digits, '-' or '_'")
PRODUCTION = env_bool("PRODUCTION", True)
QUEUE_PARTITIONS = env_int("QUEUE_PARTITIONS", 4, minimum=1, maximum=256)
MAX_REDELIVERIES = env_int("MAX_REDELIVERIES", 5, minimum=0, maximum=1000)
QUEUE_NACK_DELAY_SECONDS = env_float("QUEUE_NACK_DELAY_SECONDS", 1.0, minimum=0.0, maximum=3600.0)
# Longer than a batch can take, database lock waits included: a consumer that is merely
# slow must not lose its partitions to another one in the middle of a batch.
QUEUE_LEASE_SECONDS = env_float("QUEUE_LEASE_SECONDS", 30.0, minimum=1.0, maximum=600.0)
# A worker writes its heartbeat this often, between batches and while it waits (for a batch
# to fill, for a backend to come back); only a batch in progress keeps it silent longer.
WORKER_HEARTBEAT_SECONDS = 2.0
# A worker silent this long is stopped or stuck: the supervisor kills and replaces it. More
# than the longest batch (QUEUE_LEASE_SECONDS bounds it), so a slow batch is not mistaken.
WORKER_HANG_SECONDS = env_float("WORKER_HANG_SECONDS", 60.0, minimum=3 * WORKER_HEARTBEAT_SECONDS, maximum=3600.0)
if WORKER_HANG_SECONDS <= QUEUE_LEASE_SECONDS:
    raise _fail(
        "WORKER_HANG_SECONDS",
        os.environ.get("WORKER_HANG_SECONDS") or f"{WORKER_HANG_SECONDS:g} (the default)",
        f"more than QUEUE_LEASE_SECONDS ({QUEUE_LEASE_SECONDS:g}), the longest a batch may take, is required",
    )
# A new worker's time to its first heartbeat: start-up and connecting to the broker.
WORKER_START_GRACE_SECONDS = env_float("WORKER_START_GRACE_SECONDS", 60.0, minimum=1.0, maximum=3600.0)
# The console's backlog and worker-throughput samples (queueing/sampling.py): taken this
# often, kept this long. At least the chart's 15 minutes are kept, so the chart is full.
BACKLOG_SAMPLE_SECONDS = env_float("BACKLOG_SAMPLE_SECONDS", 5.0, minimum=1.0, maximum=60.0)
BACKLOG_SAMPLES_KEEP_SECONDS = env_int("BACKLOG_SAMPLES_KEEP_SECONDS", 3600, minimum=900, maximum=7 * 24 * 3600)
TRACK_MAX_BODY_BYTES = env_int("TRACK_MAX_BODY_BYTES", 1024 * 1024, minimum=1024, maximum=1024**3)
TRACK_MAX_EVENTS = env_int("TRACK_MAX_EVENTS", 1000, minimum=1, maximum=100_000)
TRACK_RETRY_AFTER_SECONDS = env_int("TRACK_RETRY_AFTER_SECONDS", 5, minimum=1, maximum=3600)
# Deeper JSON is refused with 422: nothing legitimate nests this far, and deep values
# are what recursion limits in JSON encoders and copies trip over.
# Successful workflow runs (and their traces) are kept this long; failed runs until deleted.
WORKFLOW_RUNS_KEEP_DAYS = env_int("WORKFLOW_RUNS_KEEP_DAYS", 7, minimum=0, maximum=3650)
TRACK_MAX_DEPTH = env_int("TRACK_MAX_DEPTH", 64, minimum=8, maximum=200)
# Request headers never stored with an event (shell-style patterns, case-insensitive):
# anything whose name suggests a credential.
TRACK_DROP_HEADERS = tuple(
    p.lower()
    for p in env_list(
        "TRACK_DROP_HEADERS",
        [
            "authorization", "proxy-authorization", "cookie", "set-cookie", "*auth*", "*token*", "*secret*",
            "*password*", "*passwd*", "*api-key*", "*apikey*", "*api_key*", "*-key", "*credential*",
            "*signature*", "*session*", "x-csrf*", "x-xsrf*",
        ],
    )
)  # fmt: skip
SOURCE_CACHE_SECONDS = env_float("SOURCE_CACHE_SECONDS", 2.0, minimum=0.0, maximum=2.0)
# Testing knob for crash tests: "<point>:<seconds>" pauses a worker there (see queueing/faults.py).
FAULT_INJECT = env_fault_injection("FAULT_INJECT")

# --- Outbox (workflows/outbox): remote HTTP calls and e-mails, run by django-q2 --------

# Per HTTP attempt: the time to connect, and the most the whole call may take.
OUTBOX_CONNECT_TIMEOUT_SECONDS = env_float("OUTBOX_CONNECT_TIMEOUT_SECONDS", 3.0, minimum=0.1, maximum=60.0)
OUTBOX_TIMEOUT_SECONDS = env_float("OUTBOX_TIMEOUT_SECONDS", 10.0, minimum=0.2, maximum=300.0)
if OUTBOX_TIMEOUT_SECONDS < OUTBOX_CONNECT_TIMEOUT_SECONDS:
    raise _fail(
        "OUTBOX_TIMEOUT_SECONDS",
        str(OUTBOX_TIMEOUT_SECONDS),
        f"at least OUTBOX_CONNECT_TIMEOUT_SECONDS ({OUTBOX_CONNECT_TIMEOUT_SECONDS:g}) is required",
    )
# Backoff between attempts: base, doubling per attempt up to max, with jitter; a Retry-After
# answer is honoured instead. Past the window (from the first try, or from a replay) a
# delivery that still fails is dead.
OUTBOX_RETRY_BASE_SECONDS = env_float("OUTBOX_RETRY_BASE_SECONDS", 10.0, minimum=0.01, maximum=3600.0)
OUTBOX_RETRY_MAX_SECONDS = env_float("OUTBOX_RETRY_MAX_SECONDS", 300.0, minimum=0.01, maximum=86400.0)
OUTBOX_RETRY_WINDOW_SECONDS = env_float("OUTBOX_RETRY_WINDOW_SECONDS", 6 * 3600.0, minimum=0.0, maximum=30 * 86400.0)
# A destination is paused after this many dead deliveries in a row (0: never).
OUTBOX_PAUSE_AFTER_FAILURES = env_int("OUTBOX_PAUSE_AFTER_FAILURES", 5, minimum=0, maximum=100_000)
# SSRF protection: refuse targets resolving to private, loopback, link-local, multicast or
# reserved addresses. Off by default so receivers on this machine work; turn it on in
# production, where workflow authors must not reach the internal network.
OUTBOX_BLOCK_PRIVATE_ADDRESSES = env_bool("OUTBOX_BLOCK_PRIVATE_ADDRESSES", False)
# A pending delivery this far past its time has lost its task (a crash): the once-a-minute
# sweep queues it again. A delivery "sending" for longer than the task timeout was cut off.
OUTBOX_LOST_AFTER_SECONDS = env_float("OUTBOX_LOST_AFTER_SECONDS", 60.0, minimum=1.0, maximum=86400.0)
# run_workers also runs the django-q2 cluster that makes the outbox's calls (`manage.py qcluster`).
OUTBOX_RUN_CLUSTER = env_bool("OUTBOX_RUN_CLUSTER", True)

# E-mail deliveries go through Django's SMTP backend. The defaults suit a local relay
# (localhost:25, no login); set EMAIL_HOST etc. for a real provider.
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise _fail("EMAIL_USE_SSL", "true", "EMAIL_USE_TLS (STARTTLS) and EMAIL_USE_SSL exclude each other; set one")
EMAIL_TIMEOUT = OUTBOX_TIMEOUT_SECONDS
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "tracardi@localhost")

# django-q2 on the ORM broker (the same database, no server) runs the outbox's deliveries.
_q_timeout = max(60, int(3 * (OUTBOX_CONNECT_TIMEOUT_SECONDS + OUTBOX_TIMEOUT_SECONDS)))
Q_CLUSTER = {
    "name": "tracardi",
    "orm": "default",
    "workers": env_int("OUTBOX_WORKERS", 2, minimum=1, maximum=64),
    # A new task is picked up within half a second (the broker polls the table this often).
    "poll": 0.5,
    # A task is killed after this long: well over one HTTP call (connect + total timeout) or
    # one SMTP conversation, so only a stuck call is ever cut off.
    "timeout": _q_timeout,
    # A task not acknowledged after this long (its worker died) is handed out again; more
    # than the timeout, so a slow task is never run twice at the same time.
    "retry": 2 * _q_timeout,
    # A task that raises (the database was away) is tried this often; the outbox's own
    # retries are in the Delivery rows, not here.
    "max_attempts": 5,
    # A periodic schedule missed while the cluster was down runs once, not once per missed run.
    "catch_up": False,
    "save_limit": 250,
}

LOG_LEVEL = env_choice(
    "LOG_LEVEL",
    "info",
    {level: None for level in ("debug", "info", "warning", "error", "critical")},
).upper()

# Log shipping (console/logs): the workers', the supervisor's and the API's log lines go, besides
# stdout/stderr, to the console's log table (/admin/console/logs/). Off for a deployment that
# ships its logs elsewhere, or to measure the pipeline without it (bench/logging_cost.py).
LOG_SHIPPING = env_bool("LOG_SHIPPING", True)
# The log table is pruned every few minutes to records younger than this many days, and to
# the newest LOG_MAX_RECORDS of them: what the console keeps is bounded by age and by size.
LOG_RETENTION_DAYS = env_int("LOG_RETENTION_DAYS", 3, minimum=1, maximum=3650)
LOG_MAX_RECORDS = env_int("LOG_MAX_RECORDS", 200_000, minimum=1000, maximum=100_000_000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        # The reference page's format: "<time>: INFO: <message>: (<logger>:<file>:<line>)".
        "tracardi": {"format": "%(asctime)s: %(levelname)s: %(message)s: (%(name)s:%(filename)s:%(lineno)d)"}
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "tracardi"},
        # Silent until the process says what it is (console.logs.handler.start_shipping: run_worker,
        # run_workers, the WSGI app), so manage.py migrate, shell or the tests ship nothing.
        "ship": {"class": "console.logs.handler.ShippingHandler", "formatter": "tracardi", "enabled": LOG_SHIPPING},
    },
    "root": {"handlers": ["console", "ship"], "level": LOG_LEVEL},
    # One line per HTTP request to Elasticsearch would drown the workers' own lines.
    "loggers": {"elastic_transport": {"level": "WARNING"}},
}
