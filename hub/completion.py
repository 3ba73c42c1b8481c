"""'Generation <id> finished' notifications for waiting sync requests.

With Redis the waiter subscribes to a pub/sub channel; on the embedded default (no Redis)
it polls the database, the only place both processes share.
"""

import logging
import time
from collections.abc import Callable
from functools import cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# A published message can be lost (subscriber reconnecting); re-reading the row this often
# bounds the damage without turning the wait into a database poll loop.
RECHECK_SECONDS = 5.0


def _channel(generation_id: str) -> str:
    return f"hub:generation-done:{generation_id}"


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, health_check_interval=30)


def publish_done(generation_id: str) -> None:
    if not settings.REDIS_URL:
        return
    try:
        _redis().publish(_channel(generation_id), "done")
    except redis.RedisError as exc:  # waiters fall back to re-reading the row
        logger.warning("could not publish completion of %s: %s", generation_id, exc)


def wait_done(generation_id: str, *, timeout: float, is_finished: Callable[[], bool]) -> bool:
    """True once `is_finished()` holds, False if `timeout` seconds pass first."""
    deadline = time.monotonic() + max(timeout, 0)
    if not settings.REDIS_URL:
        return _until(deadline, is_finished, _sleeping(settings.WAIT_POLL_INTERVAL_SECONDS))
    pubsub = _redis().pubsub()
    try:
        # Subscribe and see the confirmation before reading the row, so a finish between the
        # read and the wait is never missed.
        pubsub.subscribe(_channel(generation_id))
        pubsub.get_message(timeout=min(RECHECK_SECONDS, max(timeout, 0.1)))
        return _until(deadline, is_finished, lambda left: pubsub.get_message(timeout=min(left, RECHECK_SECONDS)))
    except redis.RedisError as exc:
        logger.warning("pub/sub unavailable while waiting for %s (%s); polling", generation_id, exc)
        return _until(deadline, is_finished, _sleeping(1.0))
    finally:
        pubsub.close()


def _sleeping(interval: float) -> Callable[[float], None]:
    return lambda left: time.sleep(min(interval, left))


def _until(deadline: float, is_finished: Callable[[], bool], pause: Callable[[float], object]) -> bool:
    """Check, then pause (at most the time left), until finished or past the deadline."""
    while True:
        if is_finished():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        pause(left)
