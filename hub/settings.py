"""All configuration, read from the environment (12-factor) in this one module.

With no environment variables set the hub runs on embedded defaults: SQLite, local
file storage, a filesystem Celery broker and the built-in `local` image provider.
"""

import base64
import binascii
import secrets
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

from hub.infra.logs import formatter as log_formatter

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def envbool(name: str, *, default: bool) -> bool:
    """Strict, after healthchecks' envbool: a value that is not a boolean stops start-up,
    instead of quietly reading as False (django-environ's `env.bool("X")` does that)."""
    raw = env.str(name, default="").strip().lower()
    if not raw:
        return default
    if raw not in _TRUE | _FALSE:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use true or false")
    return raw in _TRUE


# Local, git-ignored state of the embedded defaults (database, media, broker folder).
VAR_DIR = Path(env.str("HUB_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _embedded_secret_key() -> str:
    """A per-checkout random key, so the embedded default needs no configuration."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = envbool("DJANGO_DEBUG", default=False)
_DATABASE = env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'hub.sqlite3'}")
# On a shared database (PostgreSQL) the hub runs as several processes and replicas: they must
# share one secret — it signs sessions and image URLs and is the default API-key pepper — so
# production never invents one; the file fallback exists for the embedded default only.
SHARED_DATABASE = _DATABASE["ENGINE"] != "django.db.backends.sqlite3"
# The examples' placeholders for secrets (.env.example, the Kubernetes example secrets) begin so.
PLACEHOLDER_SECRET = "change-me"
SECRET_KEY_MIN_LENGTH = 32


def _refuse_placeholder(name: str, secret: str | None) -> None:
    """Production (a shared database) stops at start-up on a secret still set to an example's
    placeholder, as it does on a missing one: the examples are public."""
    if SHARED_DATABASE and secret and secret.startswith(PLACEHOLDER_SECRET):
        raise ImproperlyConfigured(f"{name} is still the example's placeholder ({PLACEHOLDER_SECRET}…): set your own")


_secret_key = env.str("DJANGO_SECRET_KEY", default="")
if SHARED_DATABASE and not _secret_key:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set: it is required when DATABASE_URL points at PostgreSQL (every process and"
        " replica must share it; a per-process secret would reject the other replicas' API keys)"
    )
_refuse_placeholder("DJANGO_SECRET_KEY", _secret_key)
if SHARED_DATABASE and len(_secret_key) < SECRET_KEY_MIN_LENGTH:
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY is shorter than {SECRET_KEY_MIN_LENGTH} characters: it signs sessions and image URLs"
        " (e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(50))'`)"
    )
_refuse_placeholder("DATABASE_URL's password", _DATABASE.get("PASSWORD"))
# Debug pages show the settings and the SQL of any failing request to whoever sent it.
if SHARED_DATABASE and DEBUG and not envbool("HUB_ALLOW_DEBUG_IN_PRODUCTION", default=False):
    raise ImproperlyConfigured(
        "DJANGO_DEBUG=true on PostgreSQL: its error pages show settings and SQL to any client"
        " (HUB_ALLOW_DEBUG_IN_PRODUCTION=true runs it anyway)"
    )
SECRET_KEY = _secret_key or _embedded_secret_key()
# Keyed hash for API keys; a separate pepper lets SECRET_KEY rotate without invalidating keys.
API_KEY_PEPPER = env.str("API_KEY_PEPPER", default="") or SECRET_KEY
_refuse_placeholder("API_KEY_PEPPER", API_KEY_PEPPER)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# Production runs behind a TLS-terminating proxy: trust its X-Forwarded-Proto, redirect plain
# HTTP to HTTPS (not the health probes, which reach the process directly), send HSTS (hosts
# under the hub's own name included) and keep the cookies HTTPS-only. `manage.py check --deploy`
# is clean with these on.
BEHIND_TLS_PROXY = envbool("HUB_BEHIND_TLS_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
SECURE_SSL_REDIRECT = envbool("HUB_SSL_REDIRECT", default=BEHIND_TLS_PROXY)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("HUB_HSTS_SECONDS", default=365 * 24 * 3600 if BEHIND_TLS_PROXY else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_COOKIES = envbool("HUB_SECURE_COOKIES", default=BEHIND_TLS_PROXY)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by the hub itself (no CDN)
    "hub",
    "apikeys",
    "billing",
    "generations",
    "upstreams",
    "workers",
    "accounts",
    "axes",
]

MIDDLEWARE = [
    "hub.http.observability.RequestObservabilityMiddleware",  # request id, access log line, metrics
    "django.middleware.security.SecurityMiddleware",
    "hub.http.csp.ContentSecurityPolicyMiddleware",  # the account pages and the admin
    "whitenoise.middleware.WhiteNoiseMiddleware",  # serves the admin's and the account pages' CSS
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "hub.urls"
WSGI_APPLICATION = "hub.wsgi.application"
ASGI_APPLICATION = "hub.asgi.application"

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

# --- Database -------------------------------------------------------------------------------
DATABASES = {"default": _DATABASE}
PREPARE_THRESHOLD = 5  # psycopg's own default: a statement run this often on a connection is prepared
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # Writers take the lock when the transaction begins, so two concurrent charges queue
        # on the busy timeout instead of failing with "database is locked" on lock upgrade.
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so worker processes started by the tests see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    # A bounded pool per process (psycopg_pool, through Django): a request or task borrows a
    # connection only while it talks to the database and gives it back before it waits — on a
    # provider call or a completion — so a thousand waits hold no connection, and the whole hub's
    # connections are (processes × DATABASE_POOL_MAX_SIZE), whatever the concurrency.
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # with a pool, "close" returns the connection to it
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=10),
        # Under a burst, requests queue here for a connection (a parked greenlet costs
        # nothing); waiting longer than this is an outage, answered 500 before any charge.
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=30.0),
        # The connection class (hub.db.Connection: psycopg's, able to keep the event loop while
        # a charge holds its account lock) is set by HubConfig.ready(): importing psycopg here
        # would load it into every process that reads these settings, connecting or not.
    }
    if envbool("DATABASE_PREPARED_STATEMENTS", default=True):
        # Each pooled connection prepares a statement once it has run it PREPARE_THRESHOLD times,
        # then only binds and runs it: PostgreSQL parses and plans the hot path's statements
        # (the key lookup, the charge) once per connection, not once per request — a third of its
        # CPU per generation (bench sync-c32-0s: 6.4 against 4.3 ms). Django prepares only with server-side binding,
        # and not at all by default, for connection poolers that cannot keep prepared statements
        # (PgBouncer in transaction mode before 1.21): set this to false behind one.
        DATABASES["default"]["OPTIONS"].update(server_side_binding=True, prepare_threshold=PREPARE_THRESHOLD)
    if env.str("HUB_TEST_DATABASE_NAME", default=""):  # set per run by deploy/test.sh
        DATABASES["default"]["TEST"] = {"NAME": env.str("HUB_TEST_DATABASE_NAME")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # login throttling, for the account pages and the admin
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
# Per (email, IP): a guesser is stopped without letting anyone lock a user out from elsewhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_CALLABLE = "accounts.throttle.login_username"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_VERBOSE = False  # no banner on every start; failures and lockouts are still logged
AXES_CLIENT_IP_CALLABLE = "accounts.throttle.client_ip"  # behind the TLS proxy: the address it saw
# Self-service sign-ups: at most this many per client address per hour (0: no limit).
SIGNUPS_PER_IP_PER_HOUR = env.int("HUB_SIGNUPS_PER_IP_PER_HOUR", default=5)
# New sign-ups' API keys work only once they open the link emailed to them (emailNotVerified).
REQUIRE_EMAIL_VERIFICATION = envbool("HUB_REQUIRE_EMAIL_VERIFICATION", default=False)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing root until collectstatic runs

# --- Image storage --------------------------------------------------------------------------
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
# Read by botocore itself; checked here only for the examples' placeholder.
_refuse_placeholder("AWS_SECRET_ACCESS_KEY", env.str("AWS_SECRET_ACCESS_KEY", default=""))
AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default="") or None
AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default="us-east-1")
# Presigned URL lifetime; S3 rejects SigV4 presigns longer than 7 days, so it is clamped there.
AWS_QUERYSTRING_EXPIRE = min(env.int("AWS_QUERYSTRING_EXPIRE", default=3600), 7 * 24 * 3600)
# Serve images from a public CDN base instead of presigned URLs, when set.
AWS_S3_CUSTOM_DOMAIN = env.str("AWS_S3_CUSTOM_DOMAIN", default="") or None
USE_S3 = bool(AWS_STORAGE_BUCKET_NAME)
if USE_S3:
    _s3_options = {
        "bucket_name": AWS_STORAGE_BUCKET_NAME,
        "endpoint_url": AWS_S3_ENDPOINT_URL,
        "region_name": AWS_S3_REGION_NAME,
        "default_acl": None,  # private bucket: no public-read ACL on objects
        "querystring_auth": AWS_S3_CUSTOM_DOMAIN is None,
        "querystring_expire": AWS_QUERYSTRING_EXPIRE,
        "custom_domain": AWS_S3_CUSTOM_DOMAIN,
        "file_overwrite": True,  # a re-run of a generation overwrites its own deterministic keys
        "signature_version": "s3v4",  # botocore would still presign SigV2 in us-east-1
        # Custom endpoints (IPs, S3-compatible servers) need path-style addressing.
        "addressing_style": "path" if AWS_S3_ENDPOINT_URL else None,
    }
    STORAGES = {
        "default": {"BACKEND": "hub.infra.storage_backends.HubS3Storage", "OPTIONS": _s3_options},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
else:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }

# --- Uploads --------------------------------------------------------------------------------
REFERENCE_IMAGE_MAX_BYTES = 50 * 1024 * 1024
REFERENCE_IMAGE_MAX_PIXELS = env.int("REFERENCE_IMAGE_MAX_PIXELS", default=40_000_000)
# All of one request's references together: decoding is bounded per request, not only per file.
REFERENCE_IMAGE_MAX_TOTAL_PIXELS = env.int("REFERENCE_IMAGE_MAX_TOTAL_PIXELS", default=100_000_000)
FILE_UPLOAD_HANDLERS = ["generations.uploads.CappedTemporaryFileUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # every upload streams to a temporary file
FILE_UPLOAD_TEMP_DIR = env.str("FILE_UPLOAD_TEMP_DIR", default="") or None
DATA_UPLOAD_MAX_NUMBER_FILES = 32
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024  # JSON bodies and form fields, not files

# --- Generations ----------------------------------------------------------------------------
IMAGE_PROVIDER = env.str("IMAGE_PROVIDER", default="local")
# The built-in `local` provider renders placeholder PNGs and obeys test directives in prompts. On a
# shared database (production) it is refused — at start-up and for every generation
# (workers.checks) — unless this says the hub is a demo or a test run.
ALLOW_LOCAL_PROVIDER = envbool("HUB_ALLOW_LOCAL_PROVIDER", default=not SHARED_DATABASE)
GENERATION_TIMEOUT_SECONDS = env.int("GENERATION_TIMEOUT_SECONDS", default=800)
# The longest a sync request holds its connection: past it the answer is a 202 with poll_url (as
# for `Prefer: wait`). Behind a proxy that cuts idle reads (ingress-nginx and AWS's load balancers
# at 60 s, Cloudflare at 100 s) set it below that cut; by default a sync request waits it all.
SYNC_WAIT_SECONDS = env.float("HUB_SYNC_WAIT_SECONDS", default=float(GENERATION_TIMEOUT_SECONDS))
if not 0 < SYNC_WAIT_SECONDS <= GENERATION_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        f"HUB_SYNC_WAIT_SECONDS must be above 0 and at most GENERATION_TIMEOUT_SECONDS ({GENERATION_TIMEOUT_SECONDS})"
    )
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="").rstrip("/")
SWEEPER_INTERVAL_SECONDS = env.int("SWEEPER_INTERVAL_SECONDS", default=60)
# Each worker process offers to run the sweep; one per period wins (workers.schedule). Off: this
# process never sweeps (sweeps run wherever it is on).
WORKER_SWEEPS = envbool("WORKER_SWEEPS", default=True)
# A running attempt holds a lease it renews every third of this; a crashed worker stops
# renewing, and the attempt is taken over (or failed) once the lease runs out.
GENERATION_LEASE_SECONDS = env.int("GENERATION_LEASE_SECONDS", default=30)
# How many provider answers one worker process finishes (checks, uploads, finalizes) at once; the
# others wait their turn in order (workers.finishing). Raise it when S3 answers slowly.
WORKER_FINISHING_SLOTS = env.int("WORKER_FINISHING_SLOTS", default=8)
if WORKER_FINISHING_SLOTS < 1:
    raise ImproperlyConfigured(f"WORKER_FINISHING_SLOTS must be at least 1, not {WORKER_FINISHING_SLOTS}")
# Attempts before a generation whose worker keeps dying is failed and refunded (poison message).
GENERATION_MAX_ATTEMPTS = env.int("GENERATION_MAX_ATTEMPTS", default=3)
# The sweeper fails unfinished generations this long after their deadline.
GENERATION_DEADLINE_MARGIN_SECONDS = env.int("GENERATION_DEADLINE_MARGIN_SECONDS", default=30)
# A queued generation not claimed this long after it was handed to the broker is sent again
# by the sweeper (its task may have failed for good before claiming, or the message was lost).
GENERATION_RESEND_AFTER_SECONDS = env.int("GENERATION_RESEND_AFTER_SECONDS", default=120)
# Each process reads the model catalog at most this often (an admin edit shows within it).
CATALOG_CACHE_SECONDS = env.float("CATALOG_CACHE_SECONDS", default=5.0)
WAIT_POLL_INTERVAL_SECONDS = 0.2  # embedded default only; Redis deployments are notified

# --- Upstreams (upstreams/) -----------------------------------------------------------------
# Fernet keys (comma-separated) that encrypt the upstreams' credentials at rest: the first
# encrypts, every one decrypts, so a new key goes first and an old one leaves once
# `hub_upstream rotate-keys` re-encrypted everything. Required on PostgreSQL as soon as an upstream
# holds a credential (refused at start-up otherwise); the embedded default keeps a local key in
# var/ instead.
UPSTREAM_KEYS = env.list("HUB_UPSTREAM_KEYS", default=[])
for _index, _key in enumerate(UPSTREAM_KEYS, start=1):
    try:
        _valid = len(base64.urlsafe_b64decode(_key.encode())) == 32
    except (ValueError, binascii.Error):
        _valid = False
    if not _valid:  # the key itself is never repeated in the message
        raise ImproperlyConfigured(
            f"HUB_UPSTREAM_KEYS: key {_index} is not a Fernet key (32 url-safe base64 bytes); make one with"
            " `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
        )
# An upstream that fails (5xx, timeouts, connection errors) this many times in a row within a
# minute is opened (circuit breaker): its traffic goes to the model's other upstreams, and after
# the cool-off one call probes it.
UPSTREAM_FAILURE_THRESHOLD = env.int("HUB_UPSTREAM_FAILURE_THRESHOLD", default=5)
UPSTREAM_COOLOFF_SECONDS = env.float("HUB_UPSTREAM_COOLOFF_SECONDS", default=30.0)
if UPSTREAM_FAILURE_THRESHOLD < 1 or UPSTREAM_COOLOFF_SECONDS <= 0:
    raise ImproperlyConfigured(
        "HUB_UPSTREAM_FAILURE_THRESHOLD must be at least 1, HUB_UPSTREAM_COOLOFF_SECONDS above 0"
    )
# What one credit is worth, in the currency of the upstreams' prices (upstreams.costs): the cost
# report's margin is credits × this − upstream cost. Blank: the report shows no margin.
_credit_value = env.str("HUB_CREDIT_VALUE", default="")
try:
    CREDIT_VALUE = Decimal(_credit_value) if _credit_value else None
except InvalidOperation:
    CREDIT_VALUE = Decimal("NaN")
if CREDIT_VALUE is not None and not (CREDIT_VALUE.is_finite() and CREDIT_VALUE >= 0):
    raise ImproperlyConfigured(f"HUB_CREDIT_VALUE must be an amount such as 0.01, not {_credit_value[:20]!r}")

# --- Webhooks -------------------------------------------------------------------------------
# A webhook attempt, from connecting to the receiver's status line, gets this long in all.
WEBHOOK_TIMEOUT_SECONDS = env.float("HUB_WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# SSRF: a webhook is only ever sent to a public unicast address (checked on the address each
# attempt connects to). Loopback is allowed besides only where the hub and its user are one
# machine — the embedded default — or for tests; production (PostgreSQL) refuses it.
WEBHOOK_ALLOW_LOOPBACK = envbool("HUB_WEBHOOK_ALLOW_LOOPBACK", default=not SHARED_DATABASE)
# Waits after each failed attempt (Svix's schedule), each lengthened by up to 25 % of jitter: with
# the first try, 8 attempts over at least 27.6 h — a receiver down for a day still gets it.
WEBHOOK_RETRY_DELAYS_SECONDS = (5, 300, 1800, 7200, 18000, 36000, 36000)

# --- Payments (Stripe) -----------------------------------------------------------------------
# Both or neither. Without them the hub sells nothing: the Buy section of the Billing page, the
# credit-pack API and the webhook answer 404, and credits come from operators' grants only.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
if bool(STRIPE_SECRET_KEY) != bool(STRIPE_WEBHOOK_SECRET):
    raise ImproperlyConfigured(
        "STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET go together: set both to sell credits, or neither"
    )
if STRIPE_SECRET_KEY and not STRIPE_SECRET_KEY.startswith(("sk_", "rk_")):
    raise ImproperlyConfigured("STRIPE_SECRET_KEY must be a Stripe secret or restricted key (sk_… or rk_…)")
if STRIPE_WEBHOOK_SECRET and not STRIPE_WEBHOOK_SECRET.startswith("whsec_"):
    raise ImproperlyConfigured("STRIPE_WEBHOOK_SECRET must be the webhook endpoint's signing secret (whsec_…)")
# Another server for Stripe's API (stripe-mock, the tests' fake); empty: Stripe's own.
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="").rstrip("/")
if STRIPE_API_BASE and not STRIPE_API_BASE.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"STRIPE_API_BASE must be an http(s) URL, not {STRIPE_API_BASE!r}")

# --- Celery ---------------------------------------------------------------------------------
# All Celery settings are in this block; each says why it is set.
REDIS_URL = env.str("REDIS_URL", default="")
GENERATIONS_QUEUE = env.str("HUB_GENERATIONS_QUEUE", default="generations")
HOUSEKEEPING_QUEUE = env.str("HUB_HOUSEKEEPING_QUEUE", default="housekeeping")
BROKER_DIR = VAR_DIR / "broker"
# The filesystem broker ignores the host; naming one spares every worker kombu's "No hostname was
# supplied" warning.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL or "filesystem://localhost/"
_refuse_placeholder("REDIS_URL's password", urlsplit(REDIS_URL).password)
_refuse_placeholder("CELERY_BROKER_URL's password", urlsplit(CELERY_BROKER_URL).password)
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Embedded default: a broker that needs no server, shared by processes through a folder.
    BROKER_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT = "hub.embedded_broker:Transport"  # kombu's, each message written whole
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        "control_folder": str(BROKER_DIR / "control"),
    }
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False  # the filesystem transport has no fanout
elif CELERY_BROKER_URL.startswith("redis://"):
    CELERY_BROKER_TRANSPORT = "hub.broker:Transport"  # kombu's, one Redis client per channel
    # No copy of each delivered message in Redis (kombu's "ack emulation": a MULTI/EXEC on
    # delivery and another on ack, ~16 % of a generation worker's busy samples in the sync-c32-0s
    # profile). It only lets Redis re-deliver a dead worker's messages after a visibility timeout
    # longer than any task, and the hub recovers those sooner itself: the lease (a running
    # attempt) and the sweeper's re-send (a queued one, GENERATION_RESEND_AFTER_SECONDS). The
    # worker still keeps what it took in memory: a warm shutdown puts back what it had not
    # started, and a dead prefork child's task goes back on the queue (reject_on_worker_lost).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"ack_emulation": False}
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # The broker re-delivers an unacked message after this long. It must exceed the longest
        # task (the hard limit below), or a second worker starts a task that is still running.
        "visibility_timeout": GENERATION_TIMEOUT_SECONDS + 600,
    }
CELERY_TASK_IGNORE_RESULT = True  # outcomes live on the generation row, not in a result backend
# Celery keeps a result backend that is not thread-safe per thread, and under gevent a thread is a
# greenlet: the pool runs each task in a new one, so every task built its own disabled backend
# (~0.3 ms, 2.5 % of a generation worker's CPU in the sync-c32-0s profile). The disabled backend
# holds no state: one per process.
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_SERIALIZER = "json"  # tasks take ids only; JSON is safe to deserialize and readable
CELERY_ACCEPT_CONTENT = ["json"]
# Ack after the work: a worker holds one message per task it runs (the prefetch credit below), and
# a warm shutdown or a dead prefork child puts the unfinished ones back on the queue.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # ...also when only the pool child dies (else it is acked and lost)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # a slow paid call must not hold other queued work hostage
# Derived from the sync limit: the task finalizes and refunds on its own before the soft limit,
# which leaves room to clean up before the hard kill (enforced by the prefork pool; with the
# threads pool the task's own provider deadline and the sweeper bound the time).
CELERY_TASK_SOFT_TIME_LIMIT = GENERATION_TIMEOUT_SECONDS + 30
CELERY_TASK_TIME_LIMIT = GENERATION_TIMEOUT_SECONDS + 90
# Webhook deliveries have a queue of their own: deploy/bin/worker takes both queues, and a
# housekeeping worker (deploy/bin/housekeeping) can take them apart from paid work — the
# Kubernetes manifests run one, since KEDA may scale the generation workers to zero.
# (Generation tasks name their queue when they are sent: generations.services.generation_enqueue.)
CELERY_TASK_DEFAULT_QUEUE = HOUSEKEEPING_QUEUE
# Both queues are declared, so a worker started without --queues (`celery -A hub worker`, as
# Celery's own docs start one) takes the paid generations too, not only the default queue. Each
# is bound to an exchange of its own name, as Celery creates an undeclared queue.
CELERY_TASK_QUEUES = {name: {"exchange": name, "routing_key": name} for name in (GENERATIONS_QUEUE, HOUSEKEEPING_QUEUE)}
# The pool is chosen on the command line (`--pool threads`, see docs/operations.md): a worker_pool setting
# would silently override an explicit `--pool prefork`.
# Tasks a worker runs at once (`--concurrency` wins). Unset (or empty), the pool the worker starts
# with decides (hub.celery): WORKER_GREEN_CONCURRENCY greenlets for gevent, the CPUs for prefork and
# threads — `celery -A hub worker` is prefork, where a fixed 1,000 forked a thousand ~96 MiB
# processes. The worker writes its figure back here: the provider's HTTP pools hold that many.
_concurrency = env.str("CELERY_WORKER_CONCURRENCY", default="").strip()
if _concurrency and not (_concurrency.isdigit() and int(_concurrency) > 0):
    raise ImproperlyConfigured(
        f"CELERY_WORKER_CONCURRENCY={_concurrency!r} is not a number of tasks: leave it unset for the pool's default"
    )
CELERY_WORKER_CONCURRENCY = int(_concurrency) if _concurrency else None
WORKER_GREEN_CONCURRENCY = 1000  # greenlets: each call in flight waits on a socket, holding no thread
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apikeys.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # The contract takes JSON and multipart only: a form-urlencoded body is refused (400).
    "DEFAULT_PARSER_CLASSES": ["hub.http.parsers.JSONObjectParser", "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "hub.http.exception_handler.handle",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

# The OpenAPI schema (/api/v1/openapi.json) and its docs page (/api/docs), from the code.
SPECTACULAR_SETTINGS = {
    "TITLE": "GPT Image Hub API",
    "DESCRIPTION": "Credit-metered image generation; OpenAI SDK compatible. See docs/api.md.",
    "VERSION": "1",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "generations.schema.catalog_enums"],
}

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="GPT Image Hub <noreply@localhost>")
LOGIN_URL = "/account/login/"
LOGIN_REDIRECT_URL = "/account/"
LOGOUT_REDIRECT_URL = "/account/login/"

# Prometheus metrics (hub/infra/metrics.py): off unless a token is set; scrapers send it as a bearer
# token. The web serves /metrics; each Celery worker serves its own on HUB_METRICS_PORT.
METRICS_TOKEN = env.str("HUB_METRICS_TOKEN", default="")
METRICS_PORT = env.int("HUB_METRICS_PORT", default=0)
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("HUB_METRICS_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 32`)")
_refuse_placeholder("HUB_METRICS_TOKEN", METRICS_TOKEN)

# One JSON object per line by default (hub/infra/logs.py); `plain` for reading in a terminal.
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structured": log_formatter(LOG_FORMAT)},
    "filters": {
        "generation_task_success": {"()": "hub.infra.logs.DropGenerationTaskSuccess", "task_name": "generations.run"},
        "refused_requests": {"()": "hub.infra.logs.RefusedRequestsAsWarnings"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "structured", "filters": ["refused_requests"]}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Lines every generation would write twice over (~0.1 ms of CPU each, several per
        # generation): the provider SDK's HTTP client logs each request, Celery each message
        # received and each generation task that succeeded (generations.run: a literal here, the
        # apps are not loaded yet); the hub's own lines carry the generation's start and end.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.app.trace": {"filters": ["generation_task_success"]},
    },
}
