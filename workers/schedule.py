"""Runs the sweeper every SWEEPER_INTERVAL_SECONDS from inside the worker processes.

Every Celery worker process (started on Celery's worker_ready, workers.apps) offers to sweep four
times a period; a conditional UPDATE of the one schedule row lets exactly one process across
all replicas take each period's sweep (generations.sweeper.sweep_claim). So sweeps go on while
any worker runs, at most a quarter period late, and the hub needs no scheduler process: Celery
beat was one more process (~56 MiB resident) that had to run as exactly one replica — two
doubled every sweep, none stopped them silently while the workers kept running.

The sweep runs in this loop's own thread (a greenlet under the gevent pool), not as a task in
the pool, so it never queues behind paid provider calls. WORKER_SWEEPS=false leaves a process
out (an operator who sweeps from elsewhere; the tests, which sweep when they choose).
"""

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection

from generations.sweeper import generations_sweep, sweep_claim
from hub.infra.singletons import per_process

logger = logging.getLogger(__name__)

CHECKS_PER_PERIOD = 4


def sweeps_start(**signal_kwargs) -> None:
    """Start this process's sweep loop (once; a no-op when WORKER_SWEEPS is off)."""
    if settings.WORKER_SWEEPS:
        _sweep_thread()


@per_process
def _sweep_thread() -> threading.Thread:
    thread = threading.Thread(target=_sweep_forever, name="sweeper", daemon=True)
    thread.start()
    return thread


def _sweep_forever() -> None:
    period = timedelta(seconds=settings.SWEEPER_INTERVAL_SECONDS)
    while True:  # as long as the process lives
        try:
            if sweep_claim(period=period):
                generations_sweep()
        except Exception:  # noqa: BLE001 — a database hiccup must not end sweeping for good
            logger.exception("sweep failed; trying again next period")
        finally:
            connection.close()  # back to the pool: the loop holds no connection while it sleeps
        time.sleep(period.total_seconds() / CHECKS_PER_PERIOD)
