"""Health endpoints for load balancers, Docker and Kubernetes probes.

- `/healthz`: the process is alive and serving (liveness). No dependency is touched, so an
  outage of the database or the broker never gets healthy web processes restarted.
- `/readyz`: the database, the broker and the image storage are reachable (readiness). 503
  names the ones that failed (`"broker": "unreachable"`); the reason is logged, never answered
  (it may name internal hosts). A process asked to stop answers 503 `stopping`, so it is taken
  out of the load balancer while it drains.

Each check has its own short timeout and opens its own connection, outside the request pool:
a readiness probe measures "reachable", not "a pooled connection is free".
"""

import logging
import os

from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from hub.infra import backends, shutdown
from hub.infra.singletons import per_process

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    if shutdown.stopping():
        return JsonResponse({"status": "stopping", "checks": {}}, status=503)
    checks = {}
    for name, check in (("database", _database), ("broker", _broker), ("storage", _storage)):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 — any failure of a dependency means "not ready"
            logger.warning("readiness: %s unreachable: %s: %s", name, type(exc).__name__, exc)
            checks[name] = "unreachable"
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        return JsonResponse({"status": "unavailable", "failed": failed, "checks": checks}, status=503)
    return JsonResponse({"status": "ok", "checks": checks})


def _database() -> None:
    if not backends.postgresql():  # the embedded default: a file next to the process
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if not connection.in_atomic_block:
            connection.close()
        return
    import psycopg

    params = {k: v for k, v in connection.get_connection_params().items() if k not in ("cursor_factory", "context")}
    with psycopg.connect(**params, connect_timeout=max(int(CHECK_TIMEOUT_SECONDS), 1), autocommit=True) as conn:
        conn.execute("SELECT 1")


def _broker() -> None:
    from hub.celery import app

    with app.connection_for_write(connect_timeout=CHECK_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=0, timeout=CHECK_TIMEOUT_SECONDS)


def _storage() -> None:
    if not backends.s3():
        media = settings.MEDIA_ROOT
        if not (os.path.isdir(media) or os.access(os.path.dirname(media), os.W_OK)):
            raise OSError(f"{media} is neither a folder nor creatable")
        return
    _s3_client().head_bucket(Bucket=settings.AWS_STORAGE_BUCKET_NAME)


@per_process
def _s3_client():
    """One client per process with short timeouts and no retries (a probe must answer fast)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=CHECK_TIMEOUT_SECONDS,
        read_timeout=CHECK_TIMEOUT_SECONDS,
        retries={"max_attempts": 1, "mode": "standard"},
        signature_version="s3v4",
        s3={"addressing_style": "path" if settings.AWS_S3_ENDPOINT_URL else "auto"},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.AWS_S3_ENDPOINT_URL,
        region_name=settings.AWS_S3_REGION_NAME,
        config=config,
    )
