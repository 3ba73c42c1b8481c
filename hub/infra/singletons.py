"""One object per process — a client, a connection pool, a keeper thread — made on first use.

gunicorn and Celery's prefork pool fork their workers: a child must not use its parent's
sockets, locks or threads (a thread does not survive a fork), so a forked child makes its own
on first use. Concurrent first uses — threads, or greenlets under gevent, where `threading`
is gevent's — make one, not several.
"""

import functools
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def per_process(factory: Callable[..., T]) -> Callable[..., T]:
    """`factory(*args)` made once per process and arguments, then the same object returned.

    The returned callable's `reset()` forgets what was made (a test that changes the settings
    the factory reads).
    """
    made: dict[tuple, T] = {}
    lock = threading.Lock()

    def forget() -> None:
        nonlocal lock
        made.clear()
        lock = threading.Lock()  # one held by another thread at the fork is never released here

    os.register_at_fork(after_in_child=forget)

    @functools.wraps(factory)
    def get(*args) -> T:
        try:
            return made[args]
        except KeyError:
            pass
        with lock:
            if args not in made:
                made[args] = factory(*args)
            return made[args]

    get.reset = made.clear
    return get
