"""Keeps the leases of the attempts running in this worker process alive.

One loop per process renews every running attempt's lease in one UPDATE every third of
GENERATION_LEASE_SECONDS — not a thread (and a database connection) per generation. A process
that dies stops renewing, and its attempts are taken over once their leases lapse. The loop is
a thread, which under Celery's gevent pool is a greenlet; it starts on first use in each
process, so a forked pool child gets its own.
"""

import logging
import threading
import time
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

from generations.services import generation_leases_renew
from hub.infra.singletons import per_process

logger = logging.getLogger(__name__)


class _LeaseKeeper:
    def __init__(self):
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}  # generation id → attempt (the fencing token)
        threading.Thread(target=self._renew_forever, name="lease-keeper", daemon=True).start()

    @contextmanager
    def hold(self, *, generation_id: str, attempt: int):
        with self._lock:
            self._running[generation_id] = attempt
        try:
            yield
        finally:
            with self._lock:
                if self._running.get(generation_id) == attempt:
                    del self._running[generation_id]

    def _renew_forever(self) -> None:
        while True:  # as long as the process lives
            time.sleep(settings.GENERATION_LEASE_SECONDS / 3)
            with self._lock:
                running = dict(self._running)
            if not running:
                continue
            try:
                renewed = generation_leases_renew(attempts=running)
                if renewed < len(running):
                    logger.warning(
                        "%s of %s running attempts no longer own their lease", len(running) - renewed, len(running)
                    )
            except Exception:  # noqa: BLE001 — a database hiccup must not end renewal for good
                logger.exception("lease renewal failed; retrying next period")
            finally:
                connection.close()  # back to the pool: the keeper holds no connection between beats


_keeper = per_process(_LeaseKeeper)


def lease_held(*, generation_id: str, attempt: int):
    """Context manager: the attempt's lease is renewed while the block runs."""
    return _keeper().hold(generation_id=generation_id, attempt=attempt)
