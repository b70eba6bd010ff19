"""Settings for the interview-practice backend: every value comes from the environment."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = os.environ.get(name) or default
    # A dotted path names a custom engine class; anything else must be a known name.
    if value not in choices and "." not in value:
        raise ImproperlyConfigured(f"{name} must be one of {sorted(choices)}, not {value!r}")
    return value


# --- Core -----------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off (production)."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DJANGO_DEBUG"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

if not DEBUG:
    # HTTPS only, as `manage.py check --deploy` asks. The PaaS router terminates TLS and sets
    # X-Forwarded-Proto itself; without trusting it every request would look like plain HTTP
    # and the redirect would never end.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)

# A platform's health check and the metrics scraper call from inside its network, over HTTP.
SECURE_REDIRECT_EXEMPT = [r"^api/health/?$", r"^api/health/(live|ready)/?$", r"^metrics/?$"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "corsheaders",
    "axes",
    # Before django_q: its qcluster command extends django-q2's with a graceful stop.
    "transcription",
    "django_q",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "sessions_app",
    "monitoring",
    "webhooks",
]

MIDDLEWARE = [
    # First: the request's time includes every other middleware's (neither reads the body).
    "monitoring.middleware.MetricsMiddleware",
    "monitoring.logs.RequestIdMiddleware",
    # Then, before anything (CSRF, the multipart parser, a view) reads or spools a byte of
    # it, a body over the limit is refused from its declared length.
    "interview_site.middleware.RequestBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a login refused by django-axes into its lockout response (429).
    "axes.middleware.AxesMiddleware",
]

# Pages load only the project's own scripts, styles and images: no inline script, no
# third-party origin, no framing (Django's built-in CSP support).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "media-src": [CSP.SELF, "blob:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

ROOT_URLCONF = "interview_site.urls"
WSGI_APPLICATION = "interview_site.wsgi.application"

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
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # WhiteNoise serves static files under gunicorn. In production they are the hashed,
    # compressed copies collectstatic writes to STATIC_ROOT (the release step), so a deploy
    # never serves stale JS from a browser's cache; in development, the app folders as they are.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Logins ---------------------------------------------------------------

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "interview-start"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# django-axes counts failed logins in the database (so the count holds across processes)
# on every path that authenticates a password: the API token, the login page, the admin.
# A username, and separately a client address, is locked out after LOGIN_FAILURE_LIMIT
# failures for LOGIN_LOCKOUT_SECONDS; attempts during a lockout are refused and not counted,
# so the lockout ends on time for the real owner.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("LOGIN_LOCKOUT_SECONDS", 15 * 60))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
AXES_COOLOFF_MESSAGE = "Too many failed logins: try again in a few minutes."
# The client address is the socket's peer (REMOTE_ADDR), never a header a client can forge.
# Behind a PaaS router set TRUSTED_PROXY_COUNT to the number of proxies that append to
# X-Forwarded-For.
if env_int("TRUSTED_PROXY_COUNT", 0):
    AXES_IPWARE_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
    AXES_IPWARE_PROXY_ORDER = "right-most"
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]

# --- Database -------------------------------------------------------------

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's SQLite backend, its writers taking turns through a lock file rather than
    # SQLite's backing-off busy handler (interview_site/sqlite/base.py).
    DATABASES["default"]["ENGINE"] = "interview_site.sqlite"
    # The web server and the queue workers write from several processes at once:
    # WAL lets readers run beside the writer, IMMEDIATE takes the write lock up
    # front so that two writers queue instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so that a qcluster process started by a test sees the test data;
    # one per test run, so that two runs side by side do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}

# --- Cache ----------------------------------------------------------------

# Shared by every process (web workers and qcluster): the upload throttle counts here, so
# its limit holds across processes, and qcluster publishes its status here. Never a
# per-process cache (LocMemCache): each gunicorn worker would then allow the full rate.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        # Django's own backends, counting gets, hits and misses (monitoring/cache.py).
        "default": {"BACKEND": "monitoring.cache.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "monitoring.cache.DatabaseCache",
            "LOCATION": "django_cache",
            # Rate-limit slots are rows here: culling live ones would forget counts.
            "OPTIONS": {"MAX_ENTRIES": env_int("DATABASE_CACHE_MAX_ENTRIES", 100_000)},
        }
    }

# --- Audio storage (MongoDB GridFS) ---------------------------------------

EMBEDDED_MONGODB_URI = "mongodb://127.0.0.1:27018/?directConnection=true"
MONGODB_URI = os.environ.get("MONGODB_URI") or EMBEDDED_MONGODB_URI
MONGODB_DB = os.environ.get("MONGODB_DB") or "interview_practice"
MONGODB_TIMEOUT_MS = env_int("MONGODB_TIMEOUT_MS", 5000)
# Health pings MongoDB with this much shorter timeout, and reuses its report for
# HEALTH_CACHE_SECONDS, so probes during an outage answer within a second and never queue.
HEALTH_TIMEOUT_MS = env_int("HEALTH_TIMEOUT_MS", 500)
HEALTH_CACHE_SECONDS = env_int("HEALTH_CACHE_SECONDS", 5)
# Sent as "Authorization: Bearer <token>", it shows the queue counts to a monitor (as staff
# see them); empty: only staff see them.
HEALTH_MONITORING_TOKEN = os.environ.get("HEALTH_MONITORING_TOKEN", "")
# Audio of answers that are not being transcribed is deleted after this many hours.
AUDIO_RETENTION_HOURS = env_int("AUDIO_RETENTION_HOURS", 24)
EMBEDDED_MONGODB_PATH = Path(os.environ.get("EMBEDDED_MONGODB_PATH") or VAR_DIR / "mongo")

# --- Transcription and scoring --------------------------------------------

TRANSCRIBER = env_choice("TRANSCRIBER", "local", {"local", "openai"})
SCORER = env_choice("SCORER", "local", {"local", "openai"})

OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL") or None
OPENAI_TRANSCRIPTION_MODEL = os.environ.get("OPENAI_TRANSCRIPTION_MODEL") or "whisper-1"
OPENAI_SCORING_MODEL = os.environ.get("OPENAI_SCORING_MODEL") or "gpt-4o-mini"
OPENAI_TIMEOUT_SECONDS = env_int("OPENAI_TIMEOUT_SECONDS", 120)

# Give the engine the question and its topic's vocabulary as a prompt (sessions_app/prompt.py).
# On by default because bench/prompt_wer.py measured it helping (README).
TRANSCRIPTION_PROMPT = env_bool("TRANSCRIPTION_PROMPT", True)

# Uploads: the Whisper API's own limit, and the longest answer worth transcribing.
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 25 * 1024 * 1024)
MAX_ANSWER_SECONDS = env_int("MAX_ANSWER_SECONDS", 600)
# Any request body: refused from its Content-Length (413) before anything reads it.
MAX_REQUEST_BYTES = env_int("MAX_REQUEST_BYTES", MAX_UPLOAD_BYTES + 64 * 1024)
# Transcriptions one user may have queued or processing at once (429 beyond).
MAX_PENDING_PER_USER = env_int("MAX_PENDING_PER_USER", 10)
# Requests whose views run at once in one web process (interview_site/asgi.py); the rest
# wait their turn in arrival order, their bodies already read.
WEB_THREADS = env_int("WEB_THREADS", 8)

# A failed attempt that may succeed later (API overloaded, MongoDB unreachable) is retried
# after RETRY_BASE * 2^(attempt-1) seconds, with jitter, until MAX_ATTEMPTS, then failed.
TRANSCRIPTION_MAX_ATTEMPTS = env_int("TRANSCRIPTION_MAX_ATTEMPTS", 5)
TRANSCRIPTION_RETRY_BASE_SECONDS = env_int("TRANSCRIPTION_RETRY_BASE_SECONDS", 30)

# "base": the model shipped in two PyPI packages, joined into WHISPER_MODEL_DIR. Or the path of
# any CTranslate2 Whisper model folder (e.g. from ct2-transformers-converter), only ever read.
WHISPER_MODEL = os.environ.get("WHISPER_MODEL") or "base"
WHISPER_MODEL_DIR = Path(os.environ.get("WHISPER_MODEL_DIR") or VAR_DIR / "whisper-base")
WHISPER_DEVICE = env_choice("WHISPER_DEVICE", "cpu", {"cpu", "cuda", "auto"})
WHISPER_COMPUTE_TYPE = env_choice(
    "WHISPER_COMPUTE_TYPE",
    "int8",
    {"default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16"}
    | {"float16", "bfloat16", "float32"},
)
# Silero voice-activity filter: silence or noise alone gives an empty transcript.
WHISPER_VAD = env_bool("WHISPER_VAD", True)
# Also pass the prompt as faster-whisper's `hotwords` (bench/prompt_wer.py measured it).
WHISPER_HOTWORDS = env_bool("WHISPER_HOTWORDS", False)
# Above 1, repeated tokens are penalised: a prompted model then loops less (bench/prompt_wer.py).
WHISPER_REPETITION_PENALTY = env_float("WHISPER_REPETITION_PENALTY", 1.0)
WHISPER_BEAM_SIZE = env_int("WHISPER_BEAM_SIZE", 5)
WHISPER_CPU_THREADS = env_int("WHISPER_CPU_THREADS", 0)  # 0: let CTranslate2 decide

# --- Task queue (django-q2, ORM broker) -----------------------------------

# A task is killed after TIMEOUT seconds and handed out again after RETRY seconds (if its
# worker died without acknowledging it), so RETRY must exceed TIMEOUT or a slow
# transcription would be started twice.
Q_TIMEOUT = env_int("Q_TIMEOUT", 600)
Q_CLUSTER = {
    "name": "interview",
    "orm": "default",
    "workers": env_int("Q_WORKERS", 2),
    "timeout": Q_TIMEOUT,
    "retry": Q_TIMEOUT + env_int("Q_RETRY_MARGIN", 60),
    "max_attempts": env_int("Q_MAX_ATTEMPTS", 3),
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.2,
    # Successful results are kept, pruned hourly to the newest Q_SUCCESS_KEEP (maintenance
    # prune_task_results). django-q2's own save_limit prunes inside each result's save: a
    # write transaction that loads every kept result (1,000 rows, unpickled) per job, and on
    # SQLite holds the one write lock meanwhile.
    "save_limit": 0,
}
Q_SUCCESS_KEEP = env_int("Q_SUCCESS_KEEP", 1000)
# A processing claim older than timeout + margin belongs to a lost worker: released to the
# queue by the reconciler until TRANSCRIPTION_MAX_ATTEMPTS, then failed.
STUCK_TRANSCRIPTION_MARGIN_SECONDS = env_int("STUCK_TRANSCRIPTION_MARGIN_SECONDS", 60)
if Q_CLUSTER["retry"] <= Q_CLUSTER["timeout"]:
    raise ImproperlyConfigured("Q_CLUSTER retry must exceed timeout")

# --- API ------------------------------------------------------------------

REST_FRAMEWORK = {
    # Token first: an anonymous request then gets 401 with WWW-Authenticate, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "sessions_app.api.exception_handler",
    # Counted atomically in the shared cache (sessions_app/throttling.py).
    "DEFAULT_THROTTLE_RATES": {
        "uploads": os.environ.get("UPLOAD_RATE_LIMIT") or "60/minute",
        "sessions": os.environ.get("SESSION_RATE_LIMIT") or "30/hour",
    },
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The OpenAPI document at /api/schema/ and its Swagger UI at /api/docs/, whose JavaScript and
# CSS are served from our static files (the sidecar), never from a CDN.
SPECTACULAR_SETTINGS = {
    "TITLE": "Interview practice API",
    "DESCRIPTION": (
        "Record spoken answers to interview questions, follow their transcription, and get "
        'them scored. Every error has one shape: `{"error": {"code", "message", '
        '"fields", "field_codes"}}`.'
    ),
    "VERSION": "1.0.0",
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "TranscriptionStatusEnum": "transcription.models.Transcription.Status",
        "SessionStatusEnum": "sessions_app.models.InterviewSession.Status",
        "HealthPartEnum": "sessions_app.serializers.HEALTH_PART",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "sessions_app.schema.add_common_errors",
    ],
}

CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/api/.*$"

# Live session events (GET /api/sessions/{id}/events): a comment line this often keeps
# proxies from closing an idle stream; credentials and the session are checked again this
# often (at once on PostgreSQL/Redis, which announce deletions); on SQLite each web process
# looks for new events this often.
EVENTS_HEARTBEAT_SECONDS = env_int("EVENTS_HEARTBEAT_SECONDS", 15)
EVENTS_RECHECK_SECONDS = env_int("EVENTS_RECHECK_SECONDS", 15)
EVENTS_POLL_MS = env_int("EVENTS_POLL_MS", 100)
# A stream ends after this long; the browser reconnects at once with Last-Event-ID, so this
# only bounds how long one connection (and its proxy's state) lives.
EVENTS_MAX_SECONDS = env_int("EVENTS_MAX_SECONDS", 600)
# The LISTEN/NOTIFY or Redis pub/sub channel that wakes the web processes.
EVENTS_CHANNEL = os.environ.get("EVENTS_CHANNEL") or "session_events"

# Uploads above this are streamed to a temporary file by Django, never held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_TEMP_DIR = os.environ.get("FILE_UPLOAD_TEMP_DIR") or None

# --- Monitoring -----------------------------------------------------------

# GET /metrics: with METRICS_TOKEN, a scraper sends "Authorization: Bearer <token>"; addresses
# in METRICS_ALLOWED_IPS (addresses or networks, the connecting peer's REMOTE_ADDR) need none.
# With neither set, /metrics answers only in DEBUG.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS")
# Every process writes its metrics there (gunicorn.conf.py sets it for the web when unset); a
# missing directory would make the first metric update fail.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
# Readiness (/api/health/ready) fails when the oldest queued answer has waited this long.
QUEUE_STALL_SECONDS = env_int("QUEUE_STALL_SECONDS", 300)

# Error tracking: unset, nothing is sent anywhere.
SENTRY_DSN = os.environ.get("SENTRY_DSN", "")
SENTRY_ENVIRONMENT = os.environ.get("SENTRY_ENVIRONMENT") or (
    "development" if DEBUG else "production"
)
if SENTRY_DSN:
    # Here, so that web and qcluster processes both report (each loads these settings).
    from monitoring.errors import sentry_init

    sentry_init(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT)

# --- Privacy --------------------------------------------------------------

# Sessions (answers, transcripts, scores, their audio and webhook deliveries) older than this
# many days are deleted by an hourly job; 0 or unset keeps them until the candidate deletes them.
TRANSCRIPT_RETENTION_DAYS = env_int("TRANSCRIPT_RETENTION_DAYS", 0)

# --- Webhooks -------------------------------------------------------------

# Production sends only to https URLs whose host resolves to public addresses (no SSRF into
# the platform's own networks); development and tests also reach local receivers.
WEBHOOK_REQUIRE_HTTPS = env_bool("WEBHOOK_REQUIRE_HTTPS", not DEBUG)
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env_bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", DEBUG)
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10)
# A failed attempt (timeout, 408, 429, 5xx) is retried after BASE * 2^(attempt-1) seconds,
# ±25% jitter, for up to RETRY_FOR seconds after the event; other 4xx are never retried.
WEBHOOK_RETRY_BASE_SECONDS = env_float("WEBHOOK_RETRY_BASE_SECONDS", 5)
WEBHOOK_RETRY_FOR_SECONDS = env_int("WEBHOOK_RETRY_FOR_SECONDS", 24 * 3600)
# Waits up to this long happen in the worker; longer ones go through the scheduler.
WEBHOOK_RETRY_IN_WORKER_SECONDS = env_float("WEBHOOK_RETRY_IN_WORKER_SECONDS", 5)
# A due delivery untouched for this long is enqueued again by the reconciler.
WEBHOOK_RECONCILE_GRACE_SECONDS = env_int("WEBHOOK_RECONCILE_GRACE_SECONDS", 30)
# An attempt still unfinished this long after its timeouts lost its worker: sent again.
WEBHOOK_CLAIM_MARGIN_SECONDS = env_int("WEBHOOK_CLAIM_MARGIN_SECONDS", 30)

# --- Logging --------------------------------------------------------------

LOG_FORMAT = os.environ.get("LOG_FORMAT") or "plain"
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every line carries the request id: the request's, or in a job the upload's that queued it.
    "filters": {"request_id": {"()": "monitoring.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "monitoring.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
