"""What the hub sells and how: image storage, uploads, generations, upstreams, webhooks, payments."""

import base64
import binascii
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from hub.settings.base import SHARED_DATABASE, VAR_DIR, env, envbool, refuse_placeholder

# --- Image storage --------------------------------------------------------------------------
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
# Read by botocore itself; checked here only for the examples' placeholder.
refuse_placeholder("AWS_SECRET_ACCESS_KEY", env.str("AWS_SECRET_ACCESS_KEY", default=""))
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
# A streamed answer or events stream with nothing to send sends a keep-alive comment this often, so
# that no proxy cuts its idle read: keep it below the shortest cut on the way (60 s above).
STREAM_KEEPALIVE_SECONDS = env.float("HUB_STREAM_KEEPALIVE_SECONDS", default=10.0)
if not 0 < STREAM_KEEPALIVE_SECONDS <= 60:
    raise ImproperlyConfigured("HUB_STREAM_KEEPALIVE_SECONDS must be above 0 and at most 60")
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
