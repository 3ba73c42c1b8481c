"""Keeps the leases of the attempts running in this worker process alive.

One loop per process renews every running attempt's lease in one UPDATE every third of
GENERATION_LEASE_SECONDS — not a thread (and a database connection) per generation. A process
that dies stops renewing, and its attempts are taken over once their leases lapse. The loop is
a thread, which under Celery's gevent pool is a greenlet; it starts on first use in each
process, so a forked pool child gets its own.

An attempt whose generation is no longer its own (canceled, taken over, deleted) is not
renewed, and its holder is told (`Lease.lost`): a generation waiting for an upstream's slot
stops waiting, rather than keeping the slot's turn — and later a call — until its deadline.
"""

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection

from generations.services import generation_leases_renew
from hub.infra.singletons import per_process

logger = logging.getLogger(__name__)


@dataclass
class Lease:
    """A running attempt's lease, as its holder sees it."""

    attempt: int
    _lost: threading.Event = field(default_factory=threading.Event)

    def lost(self) -> bool:
        """Whether the generation stopped being this attempt's (seen at the last renewal)."""
        return self._lost.is_set()


class _LeaseKeeper:
    def __init__(self):
        self._lock = threading.Lock()
        self._running: dict[str, Lease] = {}  # generation id → its attempt's lease
        threading.Thread(target=self._renew_forever, name="lease-keeper", daemon=True).start()

    @contextmanager
    def hold(self, *, generation_id: str, attempt: int):
        lease = Lease(attempt)
        with self._lock:
            self._running[generation_id] = lease
        try:
            yield lease
        finally:
            with self._lock:
                if self._running.get(generation_id) is lease:
                    del self._running[generation_id]

    def _renew_forever(self) -> None:
        while True:  # as long as the process lives
            time.sleep(settings.GENERATION_LEASE_SECONDS / 3)
            with self._lock:
                running = dict(self._running)
            if not running:
                continue
            try:
                lost = generation_leases_renew(attempts={gid: lease.attempt for gid, lease in running.items()})
                if lost:
                    logger.warning("%s of %s running attempts no longer own their lease", len(lost), len(running))
                for generation_id in lost:
                    running[generation_id]._lost.set()
            except Exception:  # noqa: BLE001 — a database hiccup must not end renewal for good
                logger.exception("lease renewal failed; retrying next period")
            finally:
                connection.close()  # back to the pool: the keeper holds no connection between beats


_keeper = per_process(_LeaseKeeper)


def lease_held(*, generation_id: str, attempt: int):
    """Context manager: the attempt's lease is renewed while the block runs; it gives the Lease."""
    return _keeper().hold(generation_id=generation_id, attempt=attempt)
