import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")

app = Celery("hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _refuse_unsafe_start(**kwargs) -> None:
    """Workers and beat refuse to start on unsafe settings (hub.startup). Celery logs and ignores
    an exception a signal handler raises, so this one ends the process."""
    from django.core.exceptions import ImproperlyConfigured

    from hub.startup import refuse_unsafe_start

    try:
        refuse_unsafe_start()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"Refusing to start: {exc}") from exc


def _serve_metrics(**kwargs) -> None:
    """A worker's own /metrics (HUB_METRICS_PORT), once it is ready; beat counts nothing."""
    from hub.metrics import serve_worker_metrics

    serve_worker_metrics()


def _fresh_log_context(**kwargs) -> None:
    """A pool thread or greenlet runs many tasks: no task's log lines carry the ids of the last."""
    import structlog

    structlog.contextvars.clear_contextvars()


signals.worker_init.connect(_refuse_unsafe_start, weak=False)
signals.task_prerun.connect(_fresh_log_context, weak=False)
signals.worker_ready.connect(_serve_metrics, weak=False)
signals.beat_init.connect(_refuse_unsafe_start, weak=False)
