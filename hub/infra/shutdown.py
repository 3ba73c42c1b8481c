"""'This process is stopping': a process-wide flag for graceful shutdown.

gunicorn's gevent worker, on SIGTERM, stops accepting connections and gives the requests in
flight `--graceful-timeout` seconds before it kills them. A sync request may wait far longer
than that for its generation (up to GENERATION_TIMEOUT_SECONDS), so deploy/gunicorn.conf.py
calls `request_stop(within=…)` when the worker gets SIGTERM, and a waiting request checks
`seconds_left()`: a wait still unfinished when it reaches 0 raises `Stopping`, which is answered
202 with the poll_url instead of being cut (the generation goes on; the client polls).

`request_stop` blocks on locks: call it from a thread or greenlet, never inside a signal
handler (the gunicorn hook spawns it).
"""

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Stopping(Exception):
    """Raised by a wait that must answer now because the process is stopping (not a failure:
    the generation goes on, and the request is answered 202 with its poll_url)."""


_stop_at: float | None = None  # time.monotonic() by which in-flight waits must have answered
_callbacks: list[Callable[[], None]] = []
_lock = threading.Lock()


def request_stop(*, within: float) -> None:
    """Ask this process's in-flight waits to answer within `within` seconds (0: now), and run
    the `on_stop` callbacks. A second request only ever brings the moment forward."""
    global _stop_at
    stop_at = time.monotonic() + max(within, 0.0)
    with _lock:
        if _stop_at is None or stop_at < _stop_at:
            _stop_at = stop_at
        callbacks = list(_callbacks)
    logger.info("stop requested: in-flight waits answer within %.0f s", max(within, 0.0))
    for callback in callbacks:
        _run(callback)


def stopping() -> bool:
    return _stop_at is not None


def seconds_left() -> float | None:
    """Seconds until in-flight waits must answer; None while the process is not stopping."""
    stop_at = _stop_at
    if stop_at is None:
        return None
    return max(stop_at - time.monotonic(), 0.0)


def on_stop(callback: Callable[[], None]) -> None:
    """Call `callback()` when a stop is requested (at once if one already was): for waking
    waiters so that they see the new deadline."""
    with _lock:
        _callbacks.append(callback)
        already = _stop_at is not None
    if already:
        _run(callback)


def _run(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # noqa: BLE001 — one failing callback must not keep the others from running
        logger.exception("shutdown callback %r failed", callback)
