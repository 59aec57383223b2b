"""Settings for every way ByteSpike runs, read from the environment.

The defaults are the embedded product: SQLite, a local-memory cache and Celery's filesystem
broker, all under ``BYTESPIKE_DATA_DIR``. Setting ``DATABASE_URL``, ``REDIS_URL`` and
``CELERY_BROKER_URL`` moves the same code onto PostgreSQL and Redis. See docs/configuration.md.
"""

import base64
import os
import secrets
from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

from console.datafiles import read_or_create
from core.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DATA_DIR = Path(os.environ.get("BYTESPIKE_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


# --- Core -------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY") or read_or_create(
    DATA_DIR / "secret_key", lambda: secrets.token_urlsafe(50)
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.forms",
    "django_htmx",
    "ninja",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "console",
    "catalogue",
    "accounts",
    "keys",
    "billing",
    "generation",
    "alerts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "console.middleware.StaticFilesMiddleware",
    "console.middleware.RequestLogMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "console.middleware.DatabaseUnavailableMiddleware",
]

FORM_RENDERER = "console.forms.ConsoleFormRenderer"
ROOT_URLCONF = "console.urls"
ASGI_APPLICATION = "console.asgi.application"
AUTH_USER_MODEL = "accounts.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "console.context_processors.console",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------

SQLITE_PATH = DATA_DIR / "bytespike.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{SQLITE_PATH}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI each request runs its sync work in a thread of its own, so per-thread persistent
    # connections are never reused; a pool is what avoids a new connection per request.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": int(os.environ.get("DATABASE_POOL_MIN", "2")),
        "max_size": int(os.environ.get("DATABASE_POOL_MAX", "20")),
        "timeout": 10,
    }
    # Parameters bound by the server, and statements a connection runs often prepared once
    # (psycopg prepares after 5 runs): the hot path's few statements skip client-side quoting
    # and the server's parse and plan. Behind PgBouncer, set DATABASE_SERVER_SIDE_BINDING=0
    # unless it runs in session mode (or 1.21+ with max_prepared_statements).
    DATABASES["default"]["OPTIONS"]["server_side_binding"] = (
        os.environ.get("DATABASE_SERVER_SIDE_BINDING", "1") == "1"
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the worker writes; IMMEDIATE takes the write lock at
    # the start of a transaction so concurrent writers wait (busy timeout) instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}

# --- Cache ------------------------------------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("BYTESPIKE_CACHE_PREFIX", "bytespike"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery -----------------------------------------------------------------------------------

BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "filesystem://localhost/"
if CELERY_BROKER_URL.startswith("filesystem://"):
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Longer than any countdown the task pipeline schedules, so a delayed message is never
    # handed to a second worker while the first still holds it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 150
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("BYTESPIKE_CELERY_QUEUE", "bytespike")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE = {
    "release-stale-holds": {"task": "billing.jobs.release_stale_holds", "schedule": 10.0},
    "prune-key-spend": {"task": "billing.jobs.prune_key_spend", "schedule": 3600.0},
    # Last month's statements go out in the first hour of the 1st, in each account's time zone.
    "send-statements": {"task": "billing.jobs.send_statements", "schedule": 900.0},
    "reap-tasks": {"task": "generation.jobs.tasks_reap", "schedule": 30.0},
}

# --- Auth and accounts (django-allauth) -------------------------------------------------------

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "console:dashboard"
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_SIGNUP_FORM_CLASS = "accounts.forms.SignupExtraForm"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = os.environ.get("BYTESPIKE_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_PRESERVE_USERNAME_CASING = False
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[ByteSpike] "
# Failed logins per IP and per (IP, email), and per email from every IP except browsers that
# signed in to it before (accounts/adapter.py: a stranger cannot lock a user out); resets per
# IP and email.
ACCOUNT_RATE_LIMITS = {
    "login_failed": "10/m/ip,5/5m/key",
    "login_failed_account": "100/h/key",
    "login": "30/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "signup": "20/m/ip",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "ByteSpike"
MFA_TOTP_TOLERANCE = 1  # accept the neighbouring 30 s code: phone clocks drift

# --- Email ------------------------------------------------------------------------------------

# EMAIL_BACKEND picks the backend; the SMTP settings apply to the SMTP backend only.
EMAIL_BACKEND_PATH = os.environ.get(
    "EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"
)
_MAILER_OPTIONS = {
    "django.core.mail.backends.smtp.EmailBackend": {
        "host": os.environ.get("EMAIL_HOST", "localhost"),
        "port": int(os.environ.get("EMAIL_PORT", "25")),
        "username": os.environ.get("EMAIL_HOST_USER", ""),
        "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
        "use_tls": env_bool("EMAIL_USE_TLS", False),
        "timeout": 20,
    },
    "django.core.mail.backends.filebased.EmailBackend": {
        "file_path": os.environ.get("EMAIL_FILE_PATH", str(DATA_DIR / "mail")),
    },
}
MAILERS = {
    "default": {
        "BACKEND": EMAIL_BACKEND_PATH,
        "OPTIONS": _MAILER_OPTIONS.get(EMAIL_BACKEND_PATH, {}),
    }
}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "ByteSpike <no-reply@bytespike.local>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Security ---------------------------------------------------------------------------------

# HTTPS: the site is reached over TLS (directly or through a proxy). On by default outside
# DEBUG; `manage.py serve` on a loopback address turns it off for its own children.
HTTPS = env_bool("BYTESPIKE_HTTPS", not DEBUG)
if env_bool("BYTESPIKE_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
# Probes and Prometheus scrape each process directly, often over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# Sent only on HTTPS responses (SecurityMiddleware checks request.is_secure()).
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000")) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:", "blob:"],
    "media-src": [CSP.SELF, "blob:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# --- Static and media -------------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = DATA_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

# Generated images and videos (generation/files.py; docs/operations.md, "Media on object
# storage") live in STORAGES["media"]: the media folder above, or an S3-compatible bucket when
# AWS_STORAGE_BUCKET_NAME is set (BYTESPIKE_MEDIA_STORAGE=local|s3 forces one). boto3 reads the
# credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or its other sources (an IAM role).
AWS_STORAGE_BUCKET_NAME = os.environ.get("AWS_STORAGE_BUCKET_NAME", "")
AWS_S3_ENDPOINT_URL = os.environ.get("AWS_S3_ENDPOINT_URL", "")
AWS_S3_REGION_NAME = os.environ.get("AWS_S3_REGION_NAME", "")
BYTESPIKE_MEDIA_STORAGE = os.environ.get("BYTESPIKE_MEDIA_STORAGE") or (
    "s3" if AWS_STORAGE_BUCKET_NAME else "local"
)
# How a bucket's files reach clients: "proxy" (web processes stream them, with ranges, as they
# do local files) or "redirect" (302 to a presigned URL valid BYTESPIKE_MEDIA_PRESIGN_SECONDS).
BYTESPIKE_MEDIA_DELIVERY = os.environ.get("BYTESPIKE_MEDIA_DELIVERY", "proxy")
BYTESPIKE_MEDIA_PRESIGN_SECONDS = int(os.environ.get("BYTESPIKE_MEDIA_PRESIGN_SECONDS", "600"))
# Files and their links expire this many days after they are made; beat deletes them.
BYTESPIKE_MEDIA_RETENTION_DAYS = float(os.environ.get("BYTESPIKE_MEDIA_RETENTION_DAYS", "1"))
if (
    BYTESPIKE_MEDIA_STORAGE not in {"local", "s3"}
    or (BYTESPIKE_MEDIA_STORAGE == "s3" and not AWS_STORAGE_BUCKET_NAME)
    or BYTESPIKE_MEDIA_DELIVERY not in {"proxy", "redirect"}
    or BYTESPIKE_MEDIA_RETENTION_DAYS <= 0
):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "Media: BYTESPIKE_MEDIA_STORAGE is local or s3 (with AWS_STORAGE_BUCKET_NAME), "
        "BYTESPIKE_MEDIA_DELIVERY proxy or redirect, BYTESPIKE_MEDIA_RETENTION_DAYS over 0."
    )
STORAGES["media"] = {"BACKEND": "generation.storage.LocalMediaStorage"}
if BYTESPIKE_MEDIA_STORAGE == "s3":
    _addressing = os.environ.get("AWS_S3_ADDRESSING_STYLE") or None  # path, virtual or auto
    STORAGES["media"] = {
        "BACKEND": "generation.storage_s3.S3MediaStorage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": AWS_S3_ENDPOINT_URL or None,
            "region_name": AWS_S3_REGION_NAME or None,
            "addressing_style": _addressing,
            "signature_version": "s3v4",
            "default_acl": None,  # private objects: the bucket's own policy
            "file_overwrite": True,  # names are random keys: no existence check per upload
        },
    }
    if BYTESPIKE_MEDIA_DELIVERY == "redirect":
        # Pages show media from /files/ links; browsers check where those redirect to.
        _scheme, _, _host = (AWS_S3_ENDPOINT_URL or "https://s3.amazonaws.com").partition("://")
        _hosts = [_host.split("/")[0]]
        if not AWS_S3_ENDPOINT_URL and AWS_S3_REGION_NAME:
            _hosts.append(f"s3.{AWS_S3_REGION_NAME}.amazonaws.com")
        _hosts += [f"{AWS_STORAGE_BUCKET_NAME}.{host}" for host in _hosts]  # virtual-hosted
        for _directive in ("img-src", "media-src"):
            SECURE_CSP[_directive] += [f"{_scheme}://{host}" for host in _hosts]
CELERY_BEAT_SCHEDULE["expire-media"] = {
    "task": "generation.jobs.artifacts_expire",
    "schedule": 600.0,
}

# --- Internationalisation ---------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
# Our English wording of third-party strings (allauth's Title Case in sentence case).
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_TZ = True

# --- Logging ----------------------------------------------------------------------------------

# BYTESPIKE_LOG_FORMAT: "text" (the default: one readable line) or "json" (one JSON object per
# line, for production); every line carries its request's context (docs/operations.md#logs).
BYTESPIKE_LOG_FORMAT = os.environ.get("BYTESPIKE_LOG_FORMAT", "text").strip().lower() or "text"
LOGGING_CONFIG = "core.logs.configure"
LOGGING = logging_config(BYTESPIKE_LOG_FORMAT, os.environ.get("LOG_LEVEL", "INFO"))

# --- ByteSpike --------------------------------------------------------------------------------

# Where the console is reached, for links in emails sent by workers (no request to build from).
BYTESPIKE_PUBLIC_URL = os.environ.get("BYTESPIKE_PUBLIC_URL", "").rstrip("/")
BYTESPIKE_DEMO_EMAIL = os.environ.get("BYTESPIKE_DEMO_EMAIL", "demo@example.com")
# API keys are stored as HMAC-SHA256 digests under this pepper; changing it voids every key.
BYTESPIKE_KEY_PEPPER = os.environ.get("BYTESPIKE_KEY_PEPPER") or read_or_create(
    DATA_DIR / "key_pepper", lambda: secrets.token_urlsafe(32)
)
# Upstream secrets are encrypted with the first key; all of them decrypt (rotation).
BYTESPIKE_ENCRYPTION_KEYS = env_list("BYTESPIKE_ENCRYPTION_KEYS") or [
    read_or_create(
        DATA_DIR / "encryption_key",
        lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    )
]
# New API and management keys per account and hour.
BYTESPIKE_KEY_CREATION_LIMIT = int(os.environ.get("BYTESPIKE_KEY_CREATION_LIMIT", "30"))
# How long a verified key stays cached. Revoking, rolling or editing a key deletes its entry at
# once; with a per-process cache (no REDIS_URL) another process can only learn by expiry.
BYTESPIKE_KEY_CACHE_SECONDS = float(
    os.environ.get("BYTESPIKE_KEY_CACHE_SECONDS", "60" if REDIS_URL else "0.5")
)
# Behind a proxy, the client address is read from this header (e.g. X-Forwarded-For), skipping
# the given number of trusted proxies from the right. Empty: the socket's peer address.
BYTESPIKE_CLIENT_IP_HEADER = os.environ.get("BYTESPIKE_CLIENT_IP_HEADER", "")
BYTESPIKE_TRUSTED_PROXIES = int(os.environ.get("BYTESPIKE_TRUSTED_PROXIES", "1"))
# The HTTP client stack for live upstreams: "aiohttp" (non-streamed calls on a plain aiohttp
# session, streams on httpx over aiohttp; measured faster, see generation/providers/clients.py)
# or "httpx" (httpcore for everything).
BYTESPIKE_UPSTREAM_TRANSPORT = os.environ.get("BYTESPIKE_UPSTREAM_TRANSPORT", "aiohttp")
# Circuit breaker per upstream deployment (generation/breakers.py). It opens after this many
# consecutive failures (counted across web processes with Redis), or when a web process sees
# this error rate over its last WINDOW seconds with at least MIN_CALLS calls; it stays open for
# COOLDOWN seconds (or the upstream's Retry-After if longer, doubled after each failed probe, at
# most MAX_COOLDOWN), then lets one probe through; a probe that never reports is given up after
# PROBE_TIMEOUT seconds.
BYTESPIKE_BREAKER_FAILURES = int(os.environ.get("BYTESPIKE_BREAKER_FAILURES", "5"))
BYTESPIKE_BREAKER_ERROR_RATE = float(os.environ.get("BYTESPIKE_BREAKER_ERROR_RATE", "0.5"))
BYTESPIKE_BREAKER_WINDOW_SECONDS = float(os.environ.get("BYTESPIKE_BREAKER_WINDOW_SECONDS", "30"))
BYTESPIKE_BREAKER_MIN_CALLS = int(os.environ.get("BYTESPIKE_BREAKER_MIN_CALLS", "20"))
BYTESPIKE_BREAKER_COOLDOWN_SECONDS = float(
    os.environ.get("BYTESPIKE_BREAKER_COOLDOWN_SECONDS", "10")
)
BYTESPIKE_BREAKER_MAX_COOLDOWN_SECONDS = float(
    os.environ.get("BYTESPIKE_BREAKER_MAX_COOLDOWN_SECONDS", "300")
)
BYTESPIKE_BREAKER_PROBE_TIMEOUT_SECONDS = float(
    os.environ.get("BYTESPIKE_BREAKER_PROBE_TIMEOUT_SECONDS", "30")
)
# Each deployment's attempts per minute (generation/health.py) are kept for a week.
CELERY_BEAT_SCHEDULE["prune-deployment-minutes"] = {
    "task": "generation.jobs.deployment_minutes_prune",
    "schedule": 3600.0,
}
# The built-in sandbox upstream (generation/providers/sandbox.py): a little latency by default so
# the demo streams visibly; the fault rates are for load tests.
BYTESPIKE_SANDBOX_LATENCY_MS = float(os.environ.get("BYTESPIKE_SANDBOX_LATENCY_MS", "120"))
BYTESPIKE_SANDBOX_TOKEN_DELAY_MS = float(os.environ.get("BYTESPIKE_SANDBOX_TOKEN_DELAY_MS", "25"))
BYTESPIKE_SANDBOX_FAILURE_RATE = float(os.environ.get("BYTESPIKE_SANDBOX_FAILURE_RATE", "0"))
BYTESPIKE_SANDBOX_TIMEOUT_RATE = float(os.environ.get("BYTESPIKE_SANDBOX_TIMEOUT_RATE", "0"))
BYTESPIKE_SANDBOX_CUT_RATE = float(os.environ.get("BYTESPIKE_SANDBOX_CUT_RATE", "0"))
# A pending or running task no worker has touched for this long is revived by the reaper (a lost
# message, a killed worker). Workers touch running tasks at least every 30 s.
BYTESPIKE_TASK_STALE_SECONDS = float(os.environ.get("BYTESPIKE_TASK_STALE_SECONDS", "120"))
# A web process renews the holds of its running requests every quarter of this; a request's hold
# not renewed for this long belongs to a process that died mid-request (killed, or its database
# gone before the settlement), and is released, free, by beat and by any live web process.
BYTESPIKE_HOLD_STALE_SECONDS = float(os.environ.get("BYTESPIKE_HOLD_STALE_SECONDS", "20"))
# An account making this many calls a second in a web process is admitted there against a credit
# lease (no database write per call, billing/metering/leases.py); below it, each call holds its
# own credit. -1 turns leases off.
BYTESPIKE_LEASE_CALLS_PER_SECOND = int(os.environ.get("BYTESPIKE_LEASE_CALLS_PER_SECOND", "5"))
# Task streams (SSE) send a keepalive comment this often, so proxies keep them open.
BYTESPIKE_SSE_KEEPALIVE_SECONDS = float(os.environ.get("BYTESPIKE_SSE_KEEPALIVE_SECONDS", "15"))
# Prometheus metrics at /metrics (docs/operations.md#metrics): a scrape must send
# "Authorization: Bearer <token>"; without a token /metrics is a 404, never open. The web
# processes and workers of a machine write their metrics to files in the folder, so a scrape of
# any web process reads the machine's (empty: each process reports only its own).
BYTESPIKE_METRICS_TOKEN = os.environ.get("BYTESPIKE_METRICS_TOKEN", "")
BYTESPIKE_METRICS_DIR = os.environ.get("BYTESPIKE_METRICS_DIR", str(DATA_DIR / "metrics"))
if BYTESPIKE_METRICS_DIR:
    BYTESPIKE_METRICS_DIR = str(Path(BYTESPIKE_METRICS_DIR).resolve())
    Path(BYTESPIKE_METRICS_DIR).mkdir(parents=True, exist_ok=True)
    # prometheus_client picks its multiprocess mode from this when first imported, which is
    # after the settings in every process (core/metrics.py).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = BYTESPIKE_METRICS_DIR
else:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
# How long a sandbox video takes to "render" (the demo's videos finish in seconds).
BYTESPIKE_SANDBOX_VIDEO_SECONDS = float(os.environ.get("BYTESPIKE_SANDBOX_VIDEO_SECONDS", "6"))
BYTESPIKE_INVITATION_DAYS = 7

# --- Payments -------------------------------------------------------------------------------
# Top-ups (docs/payments.md). BYTESPIKE_PAYMENT_PROVIDER is "stripe" (Stripe Checkout), "sandbox"
# (offline: our own checkout page pays at once, which grants credits for nothing, so it is for
# the embedded default and demos) or "none" (the top-up page says payments are not set up).
# Unset: stripe when STRIPE_SECRET_KEY is set, else sandbox on the embedded default (no
# DATABASE_URL), else none, so a production install never gives credits away by default.
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
BYTESPIKE_PAYMENT_PROVIDER = os.environ.get("BYTESPIKE_PAYMENT_PROVIDER", "").strip().lower() or (
    "stripe" if STRIPE_SECRET_KEY else "none" if os.environ.get("DATABASE_URL") else "sandbox"
)
if BYTESPIKE_PAYMENT_PROVIDER not in {"stripe", "sandbox", "none"}:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("BYTESPIKE_PAYMENT_PROVIDER is stripe, sandbox or none.")
if BYTESPIKE_PAYMENT_PROVIDER == "stripe" and not (STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "The stripe payment provider needs STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET."
    )
if BYTESPIKE_PAYMENT_PROVIDER == "stripe":
    # The top-up form posts here and is redirected to Stripe's hosted checkout.
    SECURE_CSP["form-action"] = [*SECURE_CSP["form-action"], "https://checkout.stripe.com"]
# The sandbox provider signs its webhook events with this local secret.
BYTESPIKE_SANDBOX_PAYMENT_SECRET = os.environ.get(
    "BYTESPIKE_SANDBOX_PAYMENT_SECRET"
) or read_or_create(DATA_DIR / "sandbox_payment_secret", lambda: secrets.token_urlsafe(32))
# One top-up's bounds, in credits (1 credit = 1 USD).
BYTESPIKE_TOP_UP_MIN = int(os.environ.get("BYTESPIKE_TOP_UP_MIN", "5"))
BYTESPIKE_TOP_UP_MAX = int(os.environ.get("BYTESPIKE_TOP_UP_MAX", "10000"))

# --- Callbacks --------------------------------------------------------------------------------
# Task callbacks (generation/callbacks/). Plain-HTTP callback URLs and the exempt hosts are
# for local development and tests only: in production callbacks go to public HTTPS URLs.
BYTESPIKE_CALLBACK_ALLOW_HTTP = env_bool("BYTESPIKE_CALLBACK_ALLOW_HTTP", False)
# Host names or IPs, as written in the URL, exempt from the public-address rules.
BYTESPIKE_CALLBACK_ALLOWED_HOSTS = env_list("BYTESPIKE_CALLBACK_ALLOWED_HOSTS")
# One attempt, from connect to the last byte read.
BYTESPIKE_CALLBACK_TIMEOUT_SECONDS = float(
    os.environ.get("BYTESPIKE_CALLBACK_TIMEOUT_SECONDS", "10")
)
CELERY_BEAT_SCHEDULE["callbacks-resend-due"] = {
    "task": "generation.jobs.callbacks_resend_due",
    "schedule": 60.0,
}
# After a rotation of the signing secret, callbacks carry a signature by the previous secret
# too for this long (the overlap window), so receivers can switch without dropping any; then
# the previous secret is erased (by the next signing, and by beat within five minutes).
BYTESPIKE_WEBHOOK_ROTATION_GRACE_SECONDS = float(
    os.environ.get("BYTESPIKE_WEBHOOK_ROTATION_GRACE_SECONDS", "86400")
)
CELERY_BEAT_SCHEDULE["webhook-previous-secrets-forget"] = {
    "task": "accounts.jobs.webhook_previous_secrets_forget",
    "schedule": 300.0,
}

# --- Alerts -----------------------------------------------------------------------------------
# Account alerts (alerts/, docs/alerts.md). Beat evaluates the rules of every account that spent
# since its last run this often: the longest an alert waits for its crossing (plus a worker).
BYTESPIKE_ALERTS_EVALUATE_SECONDS = float(os.environ.get("BYTESPIKE_ALERTS_EVALUATE_SECONDS", "60"))
CELERY_BEAT_SCHEDULE["alerts-evaluate"] = {
    "task": "alerts.jobs.alerts_evaluate_recent",
    "schedule": BYTESPIKE_ALERTS_EVALUATE_SECONDS,
}
CELERY_BEAT_SCHEDULE["alerts-resend-due"] = {
    "task": "alerts.jobs.alert_deliveries_resend_due",
    "schedule": 60.0,
}

# Operators' alerts (alerts/operators.py, docs/operations.md#operator-alerts): where they go (any
# of a Standard Webhooks receiver with its whsec_ secret, a Slack incoming webhook, email
# addresses; none set: nothing is checked) and when a condition is one.
BYTESPIKE_OPERATOR_ALERT_WEBHOOK = os.environ.get("BYTESPIKE_OPERATOR_ALERT_WEBHOOK", "")
BYTESPIKE_OPERATOR_ALERT_WEBHOOK_SECRET = os.environ.get(
    "BYTESPIKE_OPERATOR_ALERT_WEBHOOK_SECRET", ""
)
BYTESPIKE_OPERATOR_ALERT_SLACK = os.environ.get("BYTESPIKE_OPERATOR_ALERT_SLACK", "")
BYTESPIKE_OPERATOR_ALERT_EMAILS = os.environ.get("BYTESPIKE_OPERATOR_ALERT_EMAILS", "")
BYTESPIKE_OPERATOR_ERROR_RATE = float(os.environ.get("BYTESPIKE_OPERATOR_ERROR_RATE", "0.5"))
BYTESPIKE_OPERATOR_TASK_WAIT_SECONDS = float(
    os.environ.get("BYTESPIKE_OPERATOR_TASK_WAIT_SECONDS", "300")
)
BYTESPIKE_OPERATOR_SETTLEMENT_LAG_SECONDS = float(
    os.environ.get("BYTESPIKE_OPERATOR_SETTLEMENT_LAG_SECONDS", "5")
)
BYTESPIKE_OPERATOR_WALLET_CHECK_SECONDS = float(
    os.environ.get("BYTESPIKE_OPERATOR_WALLET_CHECK_SECONDS", "600")
)
CELERY_BEAT_SCHEDULE["operator-checks"] = {
    "task": "alerts.jobs.operator_checks",
    "schedule": 30.0,
}
CELERY_BEAT_SCHEDULE["operator-wallets-check"] = {
    "task": "alerts.jobs.operator_wallets_check",
    "schedule": BYTESPIKE_OPERATOR_WALLET_CHECK_SECONDS,
}
