"""Per-API-key limits of a fake provider, as real providers cap every key: calls in flight at once
and images per sliding minute; over either, a 429 with OpenAI's `rate_limit_exceeded` body and
`Retry-After` (or `retry-after-ms` besides, as OpenAI also sends it). And a switch that makes one
key answer 500, for the hub's circuit breaker.

Pure bookkeeping under one lock, no I/O: tests/fakes/openai_server.py (threads) and
bench/fake_provider.py (asyncio) both admit each image request through `KeyLimits.admit` and
call `release` when they have answered it.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time

WINDOW_SECONDS = 60.0
CONCURRENCY_RETRY_AFTER = 1.0  # what the fake tells a key over its calls in flight


@dataclasses.dataclass
class KeyState:
    concurrency: int | None = None  # calls in flight at once; None: no limit
    images_per_minute: int | None = None  # images per sliding minute; None: no limit
    failing: int | None = None  # answer every call with this status (e.g. 500) while set
    retry_after_ms: bool = False  # send `retry-after-ms` besides `Retry-After`
    in_flight: int = 0
    max_in_flight: int = 0
    statuses: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    window: collections.deque = dataclasses.field(default_factory=collections.deque)  # (monotonic, images)


@dataclasses.dataclass(frozen=True)
class Refusal:
    status: int
    body: dict
    headers: dict[str, str]


class KeyLimits:
    def __init__(self):
        self._lock = threading.Lock()
        self._keys: dict[str, KeyState] = {}

    def configure(self, key: str, **settings) -> None:
        """Set (or change) `key`'s limits and switch; fields of KeyState, counters kept."""
        with self._lock:
            state = self._keys.setdefault(key, KeyState())
            for name, value in settings.items():
                if name not in ("concurrency", "images_per_minute", "failing", "retry_after_ms"):
                    raise ValueError(f"unknown key setting {name!r}")
                setattr(state, name, value)

    def known(self, key: str) -> bool:
        with self._lock:
            return key in self._keys

    def stats(self, key: str) -> KeyState:
        with self._lock:
            return dataclasses.replace(self._keys.get(key) or KeyState(), statuses=collections.Counter())

    def statuses(self, key: str) -> collections.Counter:
        with self._lock:
            return collections.Counter(self._keys[key].statuses) if key in self._keys else collections.Counter()

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()

    def admit(self, key: str, images: int) -> Refusal | KeyState | None:
        """The answer to send (a Refusal); else the call may go on, counted in flight on the key's
        state, which is returned for its `release` (None: a key without limits)."""
        with self._lock:
            state = self._keys.get(key)
            if state is None:
                return None
            if state.failing is not None:
                state.statuses[state.failing] += 1
                message = "The server had an error while processing your request. Sorry about that!"
                return Refusal(state.failing, _error(message, "server_error", None), {})
            now = time.monotonic()
            while state.window and state.window[0][0] <= now - WINDOW_SECONDS:
                state.window.popleft()
            if state.concurrency is not None and state.in_flight >= state.concurrency:
                state.statuses[429] += 1
                message = f"Rate limit reached for concurrent requests: Limit {state.concurrency}. Please try again."
                return Refusal(429, _error(message, "requests", "rate_limit_exceeded"), _wait(state, 1.0))
            if state.images_per_minute is not None:
                used = sum(count for _, count in state.window)
                if used + images > state.images_per_minute:
                    wait = state.window[0][0] + WINDOW_SECONDS - now if state.window else WINDOW_SECONDS
                    message = (
                        f"Rate limit reached for images per minute (IPM): Limit {state.images_per_minute},"
                        f" Used {used}, Requested {images}. Please try again in {math.ceil(wait)}s."
                    )
                    state.statuses[429] += 1
                    return Refusal(429, _error(message, "requests", "rate_limit_exceeded"), _wait(state, wait))
                state.window.append((now, images))
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            return state

    def release(self, state: KeyState, status: int) -> None:
        """A call `admit` let through on `state` was answered with `status`. Counted on that state,
        not on the key's current one: a call still in flight when a test's `clear` came (its
        workers killed, the fake's answer slept out) counted a 200 on the next test's key."""
        with self._lock:
            state.in_flight -= 1
            state.statuses[status] += 1


def _error(message: str, type_: str, code: str | None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _wait(state: KeyState, seconds: float) -> dict[str, str]:
    headers = {"Retry-After": str(max(1, math.ceil(seconds)))}
    if state.retry_after_ms:
        headers["retry-after-ms"] = str(max(1, round(seconds * 1000)))
    return headers
