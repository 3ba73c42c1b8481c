"""gunicorn hooks for deploy/bin/web (its options stay on the command line there).

Graceful shutdown: on SIGTERM a gevent worker stops accepting connections and gives the
requests in flight --graceful-timeout seconds before it kills them. A sync request may wait for
its generation far longer than that, so the worker's SIGTERM handler also tells the process
(hub.infra.shutdown) that in-flight waits must answer within the grace period less a margin: what is
still waiting then is answered 202 with its poll_url instead of being cut.
"""

import glob
import os
import signal
import tempfile
import threading

from gunicorn.glogging import Logger

from hub.infra.logs import formatter

# Metrics across the worker processes (hub/infra/metrics.py): each process writes its counters to
# files in this directory and /metrics adds them up. Set before any worker imports
# prometheus_client; its files are removed at start (a previous run's would be counted again).
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="hub-metrics-"))

# gunicorn's own lines (start, worker restarts) in the hub's log format; the hub logs each
# request itself (hub.http.observability), so gunicorn's access log stays off (logger_class below).
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structured": formatter(os.environ.get("LOG_FORMAT", "json"))},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "loggers": {"gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}


class NoAccessLogLogger(Logger):
    """gunicorn's logger without its access log. gunicorn takes a logconfig_dict for a configured
    access log, so it built every request's log atoms (all headers and the environ) and a log
    record for a logger with no handler — 3 % of the web's CPU in bench async-c32's profile."""

    access_log_enabled = False  # the base class's property, computed from the settings


logger_class = NoAccessLogLogger

# What a waiting request needs, after its deadline, to re-read its row and answer.
STOP_MARGIN_SECONDS = 3.0


def on_starting(server):
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    within = max(worker.cfg.graceful_timeout - STOP_MARGIN_SECONDS, 0.0)
    handle_exit = worker.handle_exit  # gunicorn's own SIGTERM handler: stop accepting, drain

    def on_sigterm(sig, frame):
        handle_exit(sig, frame)
        _in_background(lambda: _request_stop(within))

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.siginterrupt(signal.SIGTERM, False)


def _request_stop(within: float) -> None:
    from hub.infra import shutdown

    shutdown.request_stop(within=within)


def _in_background(fn) -> None:
    """Out of the signal handler, which must not block (gunicorn's gevent worker does the same
    for SIGQUIT): a greenlet under gevent, else a thread."""
    from gevent import monkey

    if monkey.is_module_patched("threading"):
        import gevent

        gevent.spawn(fn)
    else:
        threading.Thread(target=fn, daemon=True).start()
