"""Finishing turns: a worker finishes the provider's answers a few at a time, in the order they came.

After the provider answers, a generation is finished in the worker: its images checked, uploaded
to S3, its row finalized. Under the gevent pool every one of those steps that waits (the upload,
the finalize) lets the next ready greenlet run, so when many answers come back together — a
burst of clients that started together, a provider that answers a batch at once — the process
shares its one core among all of them, round-robin, and each finishes only when nearly all have:
the whole burst's CPU becomes every generation's wait. Worse, their answers then leave
together, so the clients' next requests come back as the same burst, round after round.

A turn is one of WORKER_FINISHING_SLOTS slots (default 8), handed out first come, first served
(gevent's semaphore wakes its waiters in order): at most that many generations finish at once,
the others wait their turn, and a burst's answers leave one after another instead of together.
Enough slots keep the core busy while some of them wait on S3 and PostgreSQL — a process
finishes at most slots ÷ (wall time of one finish) a second — so with a remote S3 that answers
slowly raise it (the `hub_worker_finishing_wait_seconds` histogram shows the waits).

A generation waits at most MAX_WAIT_SECONDS for a turn and then finishes without one: the turns
order the work but never cap a process's throughput, and the wait stays well inside the
FINALIZE_MARGIN_SECONDS (workers.runner) that the provider call leaves before the deadline.

Measured (bench `sync-c200-5s --requests 1000`, one worker, all clients starting together):
added latency p50 515–642 ms without turns, 118–180 ms with 8; with 1.5 MiB PNGs
(`sync-c200-5s-big`) 1.24–1.31 s without, 0–212 ms with 8 (bench/RESULTS.md, ninth sitting).
"""

import time
from contextlib import contextmanager

from django.conf import settings
from gevent import monkey

from hub.infra import metrics
from hub.infra.singletons import per_process

MAX_WAIT_SECONDS = 2.0


@per_process
def _semaphore():
    """The process's finishing slots (a forked pool child makes its own)."""
    if monkey.is_module_patched("threading"):  # the gevent pool: greenlets wait in order
        from gevent.lock import BoundedSemaphore
    else:  # the threads and prefork pools, the embedded worker
        from threading import BoundedSemaphore
    return BoundedSemaphore(settings.WORKER_FINISHING_SLOTS)


@contextmanager
def finishing_turn():
    """Hold one of the process's finishing slots for the block (or, after MAX_WAIT_SECONDS
    without one, run the block anyway)."""
    slots = _semaphore()
    started = time.monotonic()
    turn = slots.acquire(timeout=MAX_WAIT_SECONDS)
    metrics.FINISHING_WAIT.observe(time.monotonic() - started)
    if not turn:
        metrics.FINISHING_UNGATED.inc()
    try:
        yield
    finally:
        if turn:
            slots.release()
