"""Waiting for an upstream slot to free: woken when one does, not by polling.

Every release of a slot (upstreams.budget) publishes the upstream's id on one channel. Each
worker process has one listener (a thread; a greenlet under the gevent pool) on it, which wakes
the longest-waiting of this process's waiters for that upstream — one per message, so a freed
slot is not raced for by every waiting call of the process. A waiter registers before it asks
for a slot, so a slot freed between its ask and its wait still wakes it; a waiter woken that no
longer needs the wake (it took a slot, or it sleeps out a cooldown instead) hands it to the next.

A message lost (the listener reconnecting) or a slot that lapses with a dead worker's lease
wakes nobody: waiters look again after at most RECHECK_SECONDS anyway.
"""

import logging
import threading
import time
from collections import deque
from contextlib import contextmanager

import redis
from django.conf import settings

from hub.infra import backends
from hub.infra.singletons import per_process

logger = logging.getLogger(__name__)

CHANNEL = "hub:up:freed"
RECHECK_SECONDS = 5.0
RECONNECT_SECONDS = 1.0


class Waiter:
    def __init__(self, upstream_ids: frozenset[str]):
        self.upstream_ids = upstream_ids
        self.event = threading.Event()
        self.woken_by: str | None = None
        self.used = False

    def wait(self, timeout: float) -> bool:
        """Until a slot of one of its upstreams frees (True) or `timeout` passes."""
        self.used = True
        return self.event.wait(timeout)


class _Listener:
    def __init__(self):
        self._lock = threading.Lock()
        self._waiting: deque[Waiter] = deque()
        threading.Thread(target=self._listen, name="upstream-freed-listener", daemon=True).start()

    def add(self, waiter: Waiter) -> None:
        with self._lock:
            self._waiting.append(waiter)

    def remove(self, waiter: Waiter) -> None:
        with self._lock:
            try:
                self._waiting.remove(waiter)
            except ValueError:
                pass  # woken: already out
        if waiter.woken_by is not None and not waiter.used:
            self.wake(waiter.woken_by)  # a wake it did not need goes to the next waiter

    def wake(self, upstream_id: str) -> None:
        with self._lock:
            for waiter in self._waiting:
                if upstream_id in waiter.upstream_ids:
                    self._waiting.remove(waiter)
                    break
            else:
                return
        waiter.woken_by = upstream_id
        waiter.event.set()

    def _listen(self) -> None:
        while True:  # as long as the process lives
            pubsub = None
            try:
                pubsub = redis.Redis.from_url(settings.REDIS_URL, health_check_interval=30).pubsub()
                pubsub.subscribe(CHANNEL)
                for message in pubsub.listen():
                    if message["type"] == "message":
                        self.wake(message["data"].decode())
            except Exception as exc:  # noqa: BLE001 — the listener must outlive any failure
                logger.warning("upstream slot listener: %s; reconnecting in %s s", exc, RECONNECT_SECONDS)
            finally:
                if pubsub is not None:
                    pubsub.close()
            time.sleep(RECONNECT_SECONDS)


@per_process
def _listener() -> _Listener:
    return _Listener()


@contextmanager
def slot_waiter(upstream_ids):
    """A waiter for a slot of any of `upstream_ids`, registered for the block: ask for a slot
    inside it, then `wait` if there was none. None without Redis (nothing to be woken by)."""
    if not backends.redis():
        yield None
        return
    listener = _listener()
    waiter = Waiter(frozenset(upstream_ids))
    listener.add(waiter)
    try:
        yield waiter
    finally:
        listener.remove(waiter)
