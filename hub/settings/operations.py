"""What operators watch and switch: metrics, logs, and the fast paths (hub/infra/fastpaths)."""

from django.core.exceptions import ImproperlyConfigured

from hub.infra.logs import formatter as log_formatter
from hub.settings.base import env, envbool, refuse_placeholder

# Prometheus metrics (hub/infra/metrics.py): off unless a token is set; scrapers send it as a bearer
# token. The web serves /metrics; each Celery worker serves its own on HUB_METRICS_PORT.
METRICS_TOKEN = env.str("HUB_METRICS_TOKEN", default="")
METRICS_PORT = env.int("HUB_METRICS_PORT", default=0)
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("HUB_METRICS_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 32`)")
refuse_placeholder("HUB_METRICS_TOKEN", METRICS_TOKEN)

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

# --- Fast paths (hub/infra/fastpaths) ---------------------------------------------------------------
# Each place the hub steps around a library's public API can be turned off, all at once or one
# by one; off, the code takes the library's own way (docs/architecture.md, "Fast paths").
FAST_PATHS = envbool("HUB_FAST_PATHS", default=True)
FAST_PATH_SWITCHES = {
    "ORM_ROWS": envbool("HUB_FAST_PATH_ORM_ROWS", default=True),
    "TASK_MESSAGE": envbool("HUB_FAST_PATH_TASK_MESSAGE", default=True),
    "REDIS_CLIENT": envbool("HUB_FAST_PATH_REDIS_CLIENT", default=True),
    "BROKER_WAITS": envbool("HUB_FAST_PATH_BROKER_WAITS", default=True),
    "KOMBU_POLL": envbool("HUB_FAST_PATH_KOMBU_POLL", default=True),
    "PG_WAIT": envbool("HUB_FAST_PATH_PG_WAIT", default=True),
    "S3_PUT": envbool("HUB_FAST_PATH_S3_PUT", default=True),
    "S3_PRESIGN": envbool("HUB_FAST_PATH_S3_PRESIGN", default=True),
    "OPENAI_POST": envbool("HUB_FAST_PATH_OPENAI_POST", default=True),
}
