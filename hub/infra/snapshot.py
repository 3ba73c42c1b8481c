"""A small table read at most every CATALOG_CACHE_SECONDS per process.

For what every generation request reads and an operator rarely edits (the model catalog, the
account types' default limits): one query per process per period instead of one per request;
an edit reaches every process within that many seconds.
"""

import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.conf import settings

T = TypeVar("T")


class Snapshot(Generic[T]):
    def __init__(self, load: Callable[[], T]):
        self._load = load
        self._read_at: float | None = None
        self._value: T | None = None

    def get(self) -> T:
        now = time.monotonic()
        if self._read_at is None or now - self._read_at >= settings.CATALOG_CACHE_SECONDS:
            self._value, self._read_at = self._load(), now
        return self._value
