"""The project's core: the environment reader, secrets and what production refuses, the database,
Django's apps and middleware, sign-in, the API framework and mail."""

import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
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


def refuse_placeholder(name: str, secret: str | None) -> None:
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
refuse_placeholder("DJANGO_SECRET_KEY", _secret_key)
if SHARED_DATABASE and len(_secret_key) < SECRET_KEY_MIN_LENGTH:
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY is shorter than {SECRET_KEY_MIN_LENGTH} characters: it signs sessions and image URLs"
        " (e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(50))'`)"
    )
refuse_placeholder("DATABASE_URL's password", _DATABASE.get("PASSWORD"))
# Debug pages show the settings and the SQL of any failing request to whoever sent it.
if SHARED_DATABASE and DEBUG and not envbool("HUB_ALLOW_DEBUG_IN_PRODUCTION", default=False):
    raise ImproperlyConfigured(
        "DJANGO_DEBUG=true on PostgreSQL: its error pages show settings and SQL to any client"
        " (HUB_ALLOW_DEBUG_IN_PRODUCTION=true runs it anyway)"
    )
SECRET_KEY = _secret_key or _embedded_secret_key()
# Keyed hash for API keys; a separate pepper lets SECRET_KEY rotate without invalidating keys.
API_KEY_PEPPER = env.str("API_KEY_PEPPER", default="") or SECRET_KEY
refuse_placeholder("API_KEY_PEPPER", API_KEY_PEPPER)
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

# --- The API (DRF, drf-spectacular), mail and the account pages ---------------------------------
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
