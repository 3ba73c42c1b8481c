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


def _concurrency_for_the_pool(sender, instance, options, **kwargs) -> None:
    """celeryd_init, before the worker reads its settings: how many tasks it runs at once, decided
    once — `--concurrency`, else CELERY_WORKER_CONCURRENCY, else by the pool it starts with:
    WORKER_GREEN_CONCURRENCY for gevent (a call in flight is a greenlet waiting on a socket), the
    CPUs for prefork and threads, as Celery's `--concurrency auto` counts them (for prefork, within
    the container's CPU quota). `celery -A hub worker` starts prefork: a fixed 1,000 forked
    children until the kernel killed processes. The figure goes back into the settings, where
    Celery reads it and the provider's HTTP pools take their size."""
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool as PreforkPool
    from celery.utils.sysinfo import AUTO_CONCURRENCY, cpu_budget, is_auto_concurrency
    from django.conf import settings

    pool = get_implementation(instance.app.either("worker_pool", options.get("pool"), options.get("pool_cls")))
    concurrency = options.get("concurrency") or settings.CELERY_WORKER_CONCURRENCY
    if not concurrency:
        concurrency = settings.WORKER_GREEN_CONCURRENCY if pool.is_green else AUTO_CONCURRENCY
    if is_auto_concurrency(concurrency):
        concurrency = cpu_budget(use_cgroup_quota=issubclass(pool, PreforkPool)).count
    settings.CELERY_WORKER_CONCURRENCY = int(concurrency)


def calls_in_flight() -> int:
    """The tasks this process runs at once: a worker's concurrency (decided as it starts, above);
    outside a worker (a script, a test, the web) what a gevent worker runs."""
    from django.conf import settings

    return settings.CELERY_WORKER_CONCURRENCY or settings.WORKER_GREEN_CONCURRENCY


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
    from hub.infra.metrics import serve_worker_metrics

    serve_worker_metrics()


def _fresh_log_context(**kwargs) -> None:
    """A pool thread or greenlet runs many tasks: no task's log lines carry the ids of the last."""
    import structlog

    structlog.contextvars.clear_contextvars()


signals.celeryd_init.connect(_concurrency_for_the_pool, weak=False)
signals.worker_init.connect(_refuse_unsafe_start, weak=False)
signals.task_prerun.connect(_fresh_log_context, weak=False)
signals.worker_ready.connect(_serve_metrics, weak=False)
