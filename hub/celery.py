import os
import sys

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")


def _broker_poll_beyond_fd_1024() -> None:
    """Under gevent kombu waits on its broker sockets with select(), which refuses any file
    descriptor from 1024 on (FD_SETSIZE): a generation worker keeps ~1,000 provider connections
    open, so a broker socket opened after them — at start, or reconnecting — ends the consumer's
    loop with "filedescriptor out of range in select()" and the worker stops taking generations
    (bench sync-c1000-10s: 962 of 3,000 sync requests timed out). gevent's own poll() is as
    cooperative and has no such limit; kombu's poll-based poller is used with it instead."""
    from kombu.utils import eventio

    gevent_select = sys.modules.get("gevent.select")
    if gevent_select is not None and eventio.xpoll is getattr(gevent_select, "poll", None):
        eventio._get_poller = lambda: eventio._poll


_broker_poll_beyond_fd_1024()

app = Celery("hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _refuse_unsafe_start(**kwargs) -> None:
    """Workers refuse to start on unsafe settings (hub.startup). Celery logs and ignores
    an exception a signal handler raises, so this one ends the process."""
    from django.core.exceptions import ImproperlyConfigured

    from hub.startup import refuse_unsafe_start

    try:
        refuse_unsafe_start()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"Refusing to start: {exc}") from exc


def _serve_metrics(**kwargs) -> None:
    """A worker's own /metrics (HUB_METRICS_PORT), once it is ready."""
    from hub.metrics import serve_worker_metrics

    serve_worker_metrics()


def _fresh_log_context(**kwargs) -> None:
    """A pool thread or greenlet runs many tasks: no task's log lines carry the ids of the last."""
    import structlog

    structlog.contextvars.clear_contextvars()


signals.worker_init.connect(_refuse_unsafe_start, weak=False)
signals.task_prerun.connect(_fresh_log_context, weak=False)
signals.worker_ready.connect(_serve_metrics, weak=False)
