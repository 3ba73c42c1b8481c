"""A sync request's wait for its generation, and a streamed answer's watch of it: no database
connection and, under gevent, no thread held while waiting (generations.completion wakes them)."""

import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import OuterRef
from django.utils import timezone

from billing.selectors import credits_summary_annotations
from generations import completion, errors
from generations.models import FINISHED, Generation, GenerationStatus
from generations.partials import Final, Partial, message_read
from generations.selectors import with_images
from generations.services.lifecycle import generation_fail
from hub.compiled import STR_MARKER, CompiledQuery
from hub.http.departure import UNWATCHED, ClientLeft, Departure
from hub.infra import backends, metrics, shutdown

logger = logging.getLogger(__name__)

# How long past its deadline a sync request still waits for the worker's own verdict.
WAIT_GRACE = timedelta(seconds=10)
# A watch re-reads its row this often even if no notification came (the backstop).
WATCH_RECHECK_SECONDS = 30.0
# While the process's completion listener is not yet subscribed, a watch re-reads this often.
UNSUBSCRIBED_RECHECK_SECONDS = 0.5


def generation_wait(
    *,
    generation: Generation,
    max_wait: float | None = None,
    enqueued_after: float | None = None,
    departure: Departure = UNWATCHED,
) -> Generation:
    """Wait until the generation finishes or its deadline passes (then fail and refund it).

    `max_wait` (the client's `Prefer: wait=N`) ends the wait sooner without touching the
    generation: it is returned unfinished, for a 202 with its poll_url. `enqueued_after`, a
    `time.monotonic()` taken before the generation was created, spares the read before the
    first wait when the completion listener was subscribed by then (generations.completion).
    A client that hangs up (`departure`) ends the wait at once, the generation untouched and
    returned as it was: it goes on, and the client finds it by GET, its webhook or a retry
    with the same Idempotency-Key.

    The wait holds no database connection (it is given back before waiting and after each
    read that finds the row unfinished; the answer to a finished one reads on) and, under
    gevent, no thread. It never raises: the credits are already charged, so a
    failure of the wait itself — notifications, database — must not answer 5xx (an SDK would
    retry and pay again). The caller gets the generation as last read, possibly unfinished,
    and answers 202 with its poll_url.
    """
    until = generation.deadline_at + WAIT_GRACE
    remaining = (until - timezone.now()).total_seconds()
    capped = max_wait is not None and max_wait < remaining

    latest = [generation]

    def finished() -> bool:
        try:
            row = _FINISHED_ROW.first(generation.pk)
        except BaseException:
            connection_release()
            raise
        if row is None:
            connection_release()  # before it waits; the answer to a finished row reads on
            return False
        latest[0] = row  # the finished row: no second read to answer with it
        return True

    try:
        connection_release()
        with metrics.SYNC_WAITS.track_inprogress():
            done = completion.wait_done(
                generation.pk,
                timeout=max_wait if capped else remaining,
                is_finished=finished,
                enqueued_after=enqueued_after,
                departure=departure,
            )
        if done:
            return latest[0]
        if not capped:
            generation_fail(generation_id=generation.pk, code=errors.TIMEOUT, message=errors.timeout_message())
        generation.refresh_from_db()
    except ClientLeft:
        logger.info("generation %s: the client hung up during its wait; the generation goes on", generation.pk)
        return generation
    except shutdown.Stopping:
        logger.info("generation %s: this process is stopping; answering with its poll_url", generation.pk)
        return _reread(generation)
    except Exception:  # noqa: BLE001 — see above: charged work is answered, never a 5xx
        logger.exception("generation %s: the wait failed; answering with the row as it is", generation.pk)
        return _reread(generation)
    return generation


def _finished_row(pk):
    # With its owner's credits summary (billing.selectors.credits_summary_of): a succeeded
    # generation's answer carries it, and read here it costs no query of its own.
    # And with its images (generations.selectors.with_images): the answer shows them.
    finished = Generation.objects.filter(pk=pk, status__in=FINISHED)
    return with_images(finished.annotate(**credits_summary_annotations(OuterRef("owner_id"))))[:1]


# The wait's read of its row, compiled once (hub.compiled: it runs at least twice per sync request).
_FINISHED_ROW = CompiledQuery(_finished_row, STR_MARKER)


def _reread(generation: Generation) -> Generation:
    try:
        generation.refresh_from_db()
    except DatabaseError:
        logger.warning("generation %s: could not re-read the row; answering 202", generation.pk)
    return generation


def connection_release() -> None:
    """Give this thread's database connection back (to the pool on PostgreSQL) before a long
    wait — unless a caller's transaction is open on it (tests), which must not be cut."""
    if not connection.in_atomic_block:
        connection.close()


def generation_watch(
    *,
    generation_id: str,
    read: Callable[[], Generation | None],
    with_partials: bool = False,
    on_start: bool = True,
    departure: Departure = UNWATCHED,
    created: Generation | None = None,
    enqueued_after: float | None = None,
) -> Iterator[Generation | Partial | Final | None]:
    """A streamed answer's wait (events streams, `stream: true`): each `read()` of the row —
    at once, then whenever a worker claims or finishes it (generations.completion) and at least
    every WATCH_RECHECK_SECONDS should a message be lost — and None every STREAM_KEEPALIVE_SECONDS
    without anything else to send (the caller sends a keep-alive). `with_partials`: each partial
    and final image relayed meanwhile (generations.partials), as it comes and before the next read.
    Not `on_start`: a worker's claim does not wake it (a stream that shows no start: a read saved). It ends
    after a finished row, when `read()` finds none (deleted), when this process stops (the
    client resumes), or at once when the client hangs up (`departure`; the generation goes on).
    Between reads it holds no database connection and, under gevent, no thread. `created`, the
    row as its request just created it, and `enqueued_after` (generation_wait's) spare the first
    read when the listener hears all of the generation's messages: `created` is yielded first."""
    # Without Redis no message wakes a watch on a start: it re-reads as often as the poller.
    recheck = WATCH_RECHECK_SECONDS if backends.redis() else settings.WAIT_POLL_INTERVAL_SECONDS
    keep_alive = settings.STREAM_KEEPALIVE_SECONDS
    local = completion.waiters()
    watch, read_first = local.watch(  # before the read
        generation_id, with_partials=with_partials, on_start=on_start, enqueued_after=enqueued_after
    )
    unread = None if read_first else created  # yielded as the first read's row
    sent_at, first_read = time.monotonic(), True
    try:
        with metrics.EVENT_STREAMS.track_inprogress(), departure.watching(watch.event):
            while not departure.left:
                watch.event.clear()
                watch.stepped = False
                generation, unread = unread or read(), None
                connection_release()
                if generation is None:
                    return
                yield generation
                if generation.status in FINISHED:
                    return
                read_at = time.monotonic()
                # A step published before this process's listener was subscribed (its first watch
                # starts it) reached nobody: until it is, re-read soon rather than after `recheck`.
                # So for a watch's first read of a queued row: a worker that took the generation just before
                # this watch subscribed saw nobody watching and announces no start
                # (completion.publish_started); its claim follows the take at once.
                queued = on_start and first_read and generation.status == GenerationStatus.QUEUED
                soon = queued or local.subscribed_since() is None
                next_read = min(recheck, UNSUBSCRIBED_RECHECK_SECONDS) if soon else recheck
                first_read = False
                while not departure.left:
                    watch.event.wait(max(min(sent_at + keep_alive, read_at + next_read) - time.monotonic(), 0))
                    watch.event.clear()  # before the partials are taken: one that comes after sets it again
                    while watch.partials and not departure.left:
                        relayed = message_read(watch.partials.popleft())
                        if relayed is not None:
                            yield relayed
                            sent_at = time.monotonic()
                    if watch.stepped:
                        break
                    now = time.monotonic()
                    if now - sent_at >= keep_alive:
                        yield None
                        sent_at = now
                    if now - read_at >= next_read:
                        break
                if shutdown.seconds_left() is not None:
                    return
    finally:
        local.remove(generation_id, watch)
