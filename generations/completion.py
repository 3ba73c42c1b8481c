"""'Generation <id> finished' (and 'started') notifications for waiting sync requests and the
events streams (generations.events_api).

A wait is an event, not a thread or a connection: each web process keeps ONE listener that
wakes all of its local waiters —

- with Redis, one pattern subscription (`hub:generation-done:*`) on one connection;
- on the embedded default (no Redis), one poller that reads all waiting ids in one query per
  `WAIT_POLL_INTERVAL_SECONDS` (the database is the only thing the processes share).

The generation row stays the truth: a waiter registers before it reads the row, so a finish
between the two is never missed, and the process re-reads all waiting rows in one query every
RECHECK_SECONDS, so a lost message (a listener reconnecting) delays a waiter but cannot hang it.
A waiter whose generation was enqueued while the listener was subscribed skips that first read
(most sync requests, whose generation has not finished yet when they start to wait): its finish
is published after the enqueue, so its message either woke the listener already — the listener
remembers the ids it heard for RECENT_SECONDS — or is still to come.
The listener and the poller are threads, which under gevent (gunicorn's and Celery's gevent
workers) are greenlets.

A watch hears the generation's own channels while it watches, subscribed on the listener's
connection: an events stream its start (publish_started: published only when someone
subscribed, so the sync waits, nearly every wait, hear nothing but finishes), a streamed
generation's stream its partial images (generations.partials) — on the same connection, so a
partial arrives before the finish published after it.
"""

import collections
import logging
import os
import threading
import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection

from generations import partials
from generations.models import FINISHED, Generation
from hub.http.departure import UNWATCHED, ClientLeft, Departure
from hub.infra import backends, shutdown
from hub.infra.redis_client import redis_client
from hub.infra.singletons import per_process

logger = logging.getLogger(__name__)

# A published message can be lost (listener reconnecting): the poller re-reads all waiting
# rows of the process this often, in one query — not one query per waiter (at a thousand
# waits, 200 queries a second).
RECHECK_SECONDS = 5.0
# Each waiter also re-reads its own row this often, should the poller itself be stuck.
BACKSTOP_SECONDS = 60.0
CHANNEL_PREFIX = "hub:generation-done:"
STARTED_PREFIX = "hub:generation-started:"  # a generation's start, for its watches alone
# What a message on a generation's channel says (a message of before the start ones: "done").
DONE, STARTED = "done", "started"
RECONNECT_SECONDS = 1.0
# How long the listener remembers a finish it heard, for a waiter that registers after it.
RECENT_SECONDS = 30.0


def _channel(generation_id: str) -> str:
    return CHANNEL_PREFIX + generation_id


def publish_done(generation_id: str, *, client=None) -> None:
    """Wake the generation's waiters. With `client` (a redis-py pipeline) the PUBLISH is queued
    on it, and the caller that sends it handles its errors."""
    _publish(generation_id, DONE, client=client)


def started_channel(generation_id: str) -> str:
    return STARTED_PREFIX + generation_id


def publish_started(generation_id: str) -> None:
    """Wake the generation's watchers (its events streams) when a worker claims it: on its own
    start channel, to which only a process with such a watch subscribes — the web processes'
    pattern subscription, which every sync wait hears, does not carry it. A worker that took the
    generation from its fair order with nobody subscribed (PUBSUB NUMSUB, in the take's own round
    trip: generations.fair) does not publish it at all; a watch that subscribed between the take
    and the claim reads the start at its next read (generation_watch: soon after a first read
    that found the generation queued)."""
    if not backends.redis():
        return
    try:
        redis_client().publish(started_channel(generation_id), STARTED)
    except (redis.RedisError, OSError) as exc:  # watchers fall back to re-reading the row
        logger.warning("could not publish %s of %s: %s", STARTED, generation_id, exc)


def _publish(generation_id: str, what: str, *, client=None) -> None:
    if not backends.redis():
        return
    if client is not None:
        client.publish(_channel(generation_id), what)
        return
    try:
        redis_client().publish(_channel(generation_id), what)
    except (redis.RedisError, OSError) as exc:  # waiters fall back to re-reading the row
        logger.warning("could not publish %s of %s: %s", what, generation_id, exc)


class Watch:
    """An events stream's wake-up (generations.services.wait.generation_watch): `event` is set
    when its generation started or finished (`stepped`: re-read the row) or a partial image came
    (`partials`: the messages, oldest first)."""

    def __init__(self):
        self.event = threading.Event()
        self.stepped = False
        self.partials: collections.deque[bytes] = collections.deque()

    def set(self) -> None:  # a step, as the waiters' events are set
        self.stepped = True
        self.event.set()

    def deliver(self, message: bytes) -> None:
        self.partials.append(message)
        self.event.set()


class _Waiters:
    """The process's waiting requests by generation id, and the one thread that wakes them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._events: dict[str, set[threading.Event]] = {}
        self._watchers: dict[str, set[threading.Event]] = {}  # woken on a start too (events streams)
        self._heard: dict[str, float] = {}  # generation id → when its finish was heard (oldest first)
        self._subscribed_at: float | None = None  # since when the listener hears every finish
        self._followed: dict[str, set[Watch]] = {}  # generation id → its watches hearing partials
        self._pubsub: redis.client.PubSub | None = None  # the listener's, while it is connected
        # With Redis: the subscription wakes waiters at once, and the poller re-reads every
        # waiting row every RECHECK_SECONDS in one query (a message lost while the listener
        # reconnects delays a waiter by at most that). Without: the poller is the only way.
        interval = RECHECK_SECONDS if backends.redis() else settings.WAIT_POLL_INTERVAL_SECONDS
        if backends.redis():
            threading.Thread(target=self._listen, name="completion-listener", daemon=True).start()
        threading.Thread(target=self._poll, args=(interval,), name="completion-poller", daemon=True).start()
        shutdown.on_stop(self._wake_all)  # waiters re-check at once against the stop deadline

    def _wake_all(self) -> None:
        with self._lock:
            events = [event for waiting in self._events.values() for event in waiting]
        for event in events:
            event.set()

    def add(self, generation_id: str, *, enqueued_after: float | None = None) -> tuple[threading.Event, bool]:
        """The waiter's event, and whether it must read the row before it waits: unless its
        generation was enqueued (after the monotonic time `enqueued_after`) while the listener was
        subscribed — then a finish so far was heard (the event is set) or is still to come."""
        event = threading.Event()
        now = time.monotonic()
        with self._lock:
            self._events.setdefault(generation_id, set()).add(event)
            heard = generation_id in self._heard
            since = self._subscribed_at
        if heard:
            event.set()
        return event, not _heard_from_enqueue(since, enqueued_after, now)

    def watch(
        self,
        generation_id: str,
        *,
        with_partials: bool = False,
        on_start: bool = True,
        enqueued_after: float | None = None,
    ) -> tuple[Watch, bool]:
        """A Watch set when the generation starts (unless not `on_start`) or finishes (or the
        process stops); the poller wakes it too once the row is finished. `with_partials`: its
        partial images too. Register it before reading the row. And whether the row must be read
        before waiting: as add's, except that a finish already heard is read at once."""
        watch = Watch()
        now = time.monotonic()
        channels = []  # the generation's channels this watch is the first to hear
        with self._lock:
            self._events.setdefault(generation_id, set()).add(watch)
            if on_start:
                if generation_id not in self._watchers:
                    channels.append(started_channel(generation_id))
                self._watchers.setdefault(generation_id, set()).add(watch)
            if with_partials:
                if generation_id not in self._followed:
                    channels.append(partials.channel(generation_id))
                self._followed.setdefault(generation_id, set()).add(watch)
            pubsub = self._pubsub
            heard = generation_id in self._heard
            since = self._subscribed_at
        if channels and pubsub is not None:  # else the listener subscribes when it (re)connects
            self._subscription(pubsub.subscribe, channels)
        return watch, heard or not _heard_from_enqueue(since, enqueued_after, now)

    def remove(self, generation_id: str, event: threading.Event | Watch) -> None:
        channels = []  # the generation's channels this watch was the last to hear
        with self._lock:
            _discard(self._events, generation_id, event)
            if _discard(self._watchers, generation_id, event):
                channels.append(started_channel(generation_id))
            if _discard(self._followed, generation_id, event):
                channels.append(partials.channel(generation_id))
            pubsub = self._pubsub
        if channels and pubsub is not None:
            self._subscription(pubsub.unsubscribe, channels)

    @staticmethod
    def _subscription(command: Callable, channels: list[str]) -> None:
        """(Un)subscribe to a generation's channels from a request's greenlet while the listener
        reads (redis-py sends a pub/sub command under its own lock). A failure is the listener's
        to mend: it reconnects and subscribes to what is watched then."""
        try:
            command(*channels)
        except (redis.RedisError, OSError) as exc:
            logger.warning("channels %s: %s", ", ".join(channels), exc)

    def count(self) -> int:
        with self._lock:
            return len(self._events)

    def subscribed_since(self) -> float | None:
        """The monotonic time since which the listener has been subscribed; None if it is not."""
        return self._subscribed_at

    def _wake(self, generation_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            events = list(self._events.get(generation_id, ()))
            heard = self._heard
            heard.pop(generation_id, None)  # to the end: the dict stays oldest first
            heard[generation_id] = now
            while now - next(iter(heard.values())) > RECENT_SECONDS:
                del heard[next(iter(heard))]
        for event in events:
            event.set()

    def _wake_watchers(self, generation_id: str) -> None:
        with self._lock:
            events = list(self._watchers.get(generation_id, ()))
        for event in events:
            event.set()

    def _deliver(self, generation_id: str, message: bytes) -> None:
        with self._lock:
            watches = list(self._followed.get(generation_id, ()))
        for watch in watches:
            watch.deliver(message)

    def _listen(self) -> None:
        while True:
            pubsub = None
            try:
                # RESP2: redis-py's RESP3 parser (its default) logs each pub/sub message at DEBUG,
                # building the message's repr first, logged or not — for a relayed image (~90 KB),
                # ~3 % of the web's py-spy samples in bench stream-c16-2s.
                client = redis.Redis.from_url(
                    settings.REDIS_URL, health_check_interval=30, client_name=listener_name(), protocol=2
                )
                pubsub = client.pubsub()
                pubsub.psubscribe(CHANNEL_PREFIX + "*")
                with self._lock:
                    self._pubsub = pubsub
                    channels = [*map(started_channel, self._watchers), *map(partials.channel, self._followed)]
                if channels:
                    pubsub.subscribe(*channels)
                for message in pubsub.listen():
                    if message["type"] == "message":
                        channel = message["channel"].decode()
                        if channel.startswith(STARTED_PREFIX):
                            self._wake_watchers(channel[len(STARTED_PREFIX) :])
                        else:
                            self._deliver(channel[len(partials.CHANNEL_PREFIX) :], message["data"])
                    elif message["type"] == "pmessage":  # a finish (or a start from a worker of before)
                        generation_id = message["channel"].decode()[len(CHANNEL_PREFIX) :]
                        if message["data"] == STARTED.encode():
                            self._wake_watchers(generation_id)
                        else:
                            self._wake(generation_id)
                    elif message["type"] == "psubscribe":  # Redis confirms: every later publish reaches us
                        self._subscribed_at = time.monotonic()
            except Exception as exc:  # noqa: BLE001 — the listener must outlive any failure
                logger.warning("completion listener: %s; reconnecting in %s s", exc, RECONNECT_SECONDS)
            finally:
                self._subscribed_at = None  # until the next confirmation, waiters read first
                with self._lock:
                    self._pubsub = None
                if pubsub is not None:
                    pubsub.close()
            time.sleep(RECONNECT_SECONDS)

    def _poll(self, interval: float) -> None:
        while True:
            time.sleep(interval)
            with self._lock:
                waiting = list(self._events)
            if not waiting:
                continue
            try:
                for generation_id in _finished_among(waiting):
                    self._wake(generation_id)
            except Exception as exc:  # noqa: BLE001 — waiters still re-read their rows (BACKSTOP_SECONDS)
                logger.warning("completion poller: %s", exc)
            finally:
                connection.close()  # back to the pool (or closed): the poller holds nothing


def _heard_from_enqueue(since: float | None, enqueued_after: float | None, now: float) -> bool:
    """Whether the listener, subscribed `since`, hears every message of a generation enqueued
    after `enqueued_after` (recently: the finishes it remembers are RECENT_SECONDS old at most)."""
    fresh = enqueued_after is not None and now - enqueued_after < RECENT_SECONDS
    return fresh and since is not None and since <= enqueued_after


def _discard(registry: dict[str, set], generation_id: str, event) -> bool:
    """Take `event` off the generation's in `registry`: True when it was the last one there."""
    events = registry.get(generation_id)
    if events is None or event not in events:
        return False
    events.discard(event)
    if events:
        return False
    del registry[generation_id]
    return True


def listener_name() -> str:
    """The listener's Redis client name (`CLIENT LIST` shows one per web process)."""
    return f"hub-completion-{os.getpid()}"


def _finished_among(generation_ids: list[str]) -> list[str]:
    """Which of the waiting generations finished, in one query (the poller's read)."""
    return list(Generation.objects.filter(pk__in=generation_ids, status__in=FINISHED).values_list("pk", flat=True))


@per_process
def waiters() -> _Waiters:
    """This process's waiters, with their listener started on first use (after any fork)."""
    return _Waiters()


def wait_done(
    generation_id: str,
    *,
    timeout: float,
    is_finished: Callable[[], bool],
    enqueued_after: float | None = None,
    departure: Departure = UNWATCHED,
) -> bool:
    """True once `is_finished()` holds, False if `timeout` seconds pass first; ClientLeft as
    soon as the client of the waiting request hangs up (`departure`, hub.http.departure).

    `is_finished` reads the row (the waiter keeps what it read); it is not called while holding a
    lock. `enqueued_after`: a
    monotonic time before the generation was enqueued, which may spare the first read (module
    docstring).
    """
    deadline = time.monotonic() + max(timeout, 0)
    local = waiters()
    # Before the first read: a finish after it wakes us.
    event, read = local.add(generation_id, enqueued_after=enqueued_after)
    try:
        with departure.watching(event):
            while True:
                if departure.left:
                    raise ClientLeft(generation_id)
                if read and is_finished():
                    return True
                read = True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                stop_left = shutdown.seconds_left()
                if stop_left is not None:  # the process is stopping: answer before it is killed
                    if stop_left <= 0:
                        raise shutdown.Stopping(generation_id)
                    left = min(left, stop_left)
                event.wait(min(left, BACKSTOP_SECONDS))
                event.clear()
    finally:
        local.remove(generation_id, event)
