"""Sync waits are woken by one listener per process — a Redis pattern subscription, or on the
embedded default one poller reading all waiting ids per query — not by a connection or a
database poll loop per waiter. And a failure of the wait never turns a charged request into a 5xx."""

import threading
import time
import uuid

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from billing.models import CreditAccount
from generations import completion
from tests.conftest import until

# Pub/sub channels are the server's, not a database's: another test run on this Redis publishing
# the same ids would wake these waiters. Each run's ids are its own.
RUN = uuid.uuid4().hex[:8]
needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="pub/sub needs Redis; embedded default polls")


def _none_finished(ids):
    return []


@pytest.fixture(autouse=True)
def _no_rows_read(monkeypatch):
    """The poller asks these tests' fakes, not the database, which generations finished."""
    monkeypatch.setattr(completion, "_finished_among", _none_finished)


class FinishLater:
    """Marks generations finished after a delay and publishes it, as a worker would."""

    def __init__(self):
        self.done: set[str] = set()
        self.reads = 0
        self._lock = threading.Lock()

    def is_finished_for(self, generation_id):
        def is_finished():
            with self._lock:
                self.reads += 1
                return generation_id in self.done

        return is_finished

    def finish(self, ids, *, after: float):
        def run():
            time.sleep(after)
            with self._lock:
                self.done.update(ids)
            for generation_id in ids:
                completion.publish_done(generation_id)

        threading.Thread(target=run).start()


def _wait_all(ids, finisher, *, timeout=30, enqueued_after=None):
    results = {}

    def wait(generation_id):
        results[generation_id] = completion.wait_done(
            generation_id,
            timeout=timeout,
            is_finished=finisher.is_finished_for(generation_id),
            enqueued_after=enqueued_after,
        )

    threads = [threading.Thread(target=wait, args=(generation_id,)) for generation_id in ids]
    for thread in threads:
        thread.start()
    return threads, results


def _listeners() -> tuple[set[tuple[str, str, str]], int]:
    """This process's listener connections (address, patterns, channels) and listener threads.
    A test that starts a fresh listener leaves the one before running: compare, do not count."""
    connections = redis.Redis.from_url(settings.REDIS_URL).client_list()
    mine = {(c["addr"], c["psub"], c["sub"]) for c in connections if c["name"] == completion.listener_name()}
    return mine, [t.name for t in threading.enumerate()].count("completion-listener")


@needs_redis
def test_fifty_waiters_share_one_subscription_and_are_each_woken_by_their_message(monkeypatch):
    earlier, earlier_threads = _listeners()
    _subscribed_listener(monkeypatch)
    before, threads_before = _listeners()
    fresh = before - earlier
    assert [(psub, sub) for _, psub, sub in fresh] == [("1", "0")]  # one connection, one pattern
    assert threads_before == earlier_threads + 1
    finisher = FinishLater()
    ids = [f"gen_shared{RUN}{i}" for i in range(50)]
    threads, results = _wait_all(ids, finisher)
    assert until(lambda: completion.waiters().count() == 50, timeout=10)
    during, threads_during = _listeners()
    started = time.monotonic()
    finisher.finish(ids, after=0.5)
    for thread in threads:
        thread.join()
    assert results == dict.fromkeys(ids, True)
    # woken by the messages: this module's poller finds nothing, and a timeout's last read comes at 30 s
    assert time.monotonic() - started < 10
    assert finisher.reads == 100  # one read before waiting, one after the message: no poll loop
    # 50 waiters: no connection, subscription or thread of their own
    assert (fresh <= during, during - before, threads_during) == (True, set(), threads_before)


def test_the_embedded_poller_reads_all_waiting_ids_in_one_query(monkeypatch):
    completion.waiters.reset()  # a fresh listener for the override below
    finisher = FinishLater()
    queries = []

    def finished_among(ids):
        queries.append(sorted(ids))
        return [generation_id for generation_id in ids if generation_id in finisher.done]

    monkeypatch.setattr(completion, "_finished_among", finished_among)

    ids = [f"gen_polled{RUN}{i}" for i in range(20)]
    with override_settings(REDIS_URL="", WAIT_POLL_INTERVAL_SECONDS=0.1):
        started = time.monotonic()
        threads, results = _wait_all(ids, finisher)
        finisher.finish(ids, after=0.5)
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    completion.waiters.reset()  # the next test gets its own again
    assert results == dict.fromkeys(ids, True)
    assert elapsed < 5  # not the 30 s timeout: the poller's rounds found them
    assert len(queries) <= elapsed / 0.1 + 1  # one query per interval, whatever the number of waiters
    assert max(len(q) for q in queries) == 20
    assert finisher.reads == 40  # each waiter: one read before waiting, one after its wake-up


def test_wait_times_out_when_nothing_finishes():
    started = time.monotonic()
    assert not completion.wait_done("gen_never", timeout=0.6, is_finished=lambda: False)
    assert 0.5 < time.monotonic() - started < 5


@pytest.mark.django_db(transaction=True)
def test_a_failing_wait_answers_202_with_poll_url_after_the_charge(api, customer, unconsumed_queue, monkeypatch):
    """Seen under load: the notification client raised ValueError/OSError, which became a 500
    after the charge — and an SDK retries a 500, paying again."""
    user, _, auth = customer

    def broken(*args, **kwargs):
        raise ValueError("I/O operation on closed file")

    monkeypatch.setattr(completion, "waiters", broken)
    body = {"model": "gpt-image-2", "prompt": "a fox", "size": "1024x1024", "quality": "low"}
    response = api.post("/api/v1/images/generations", body, format="json", **auth)
    assert response.status_code == 202
    generation = response.json()
    assert generation["status"] == "queued"
    assert generation["poll_url"].endswith(f"/api/v1/generations/{generation['id']}")
    assert CreditAccount.objects.get(user=user).balance == 120 - 2  # charged once, and kept
    assert api.get(f"/api/v1/generations/{generation['id']}", **auth).json()["status"] == "queued"


@needs_redis
def test_a_lost_message_delays_a_waiter_by_one_recheck_not_forever(monkeypatch, recheck_every):
    """No message is published at all (as when the listener was reconnecting): the process's
    poller re-reads every waiting row in one query each RECHECK_SECONDS and wakes the waiter."""
    recheck_every(0.3)
    done, queries = set(), []

    def finished_among(ids):
        queries.append(list(ids))
        return [generation_id for generation_id in ids if generation_id in done]

    monkeypatch.setattr(completion, "_finished_among", finished_among)

    threading.Timer(0.5, done.add, args=("gen_lost",)).start()  # finishes, but nobody publishes
    started = time.monotonic()
    assert completion.wait_done("gen_lost", timeout=30, is_finished=lambda: "gen_lost" in done)
    assert time.monotonic() - started < 8  # woken by the poller, not the read at the 30 s timeout
    assert ["gen_lost"] in queries


def _subscribed_listener(monkeypatch) -> float:
    """A fresh listener of this process, once Redis has confirmed its subscription: since when."""
    completion.waiters.reset()
    local = completion.waiters()
    deadline = time.monotonic() + 5
    while local.subscribed_since() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert local.subscribed_since() is not None
    return local.subscribed_since()


def _wait_one(generation_id, finisher, *, enqueued_after, monkeypatch) -> float:
    """One wait that must end finished, through a fresh listener; the seconds it took."""
    started = time.monotonic()
    assert completion.wait_done(
        generation_id,
        timeout=10,
        is_finished=finisher.is_finished_for(generation_id),
        enqueued_after=enqueued_after,
    )
    completion.waiters.reset()
    return time.monotonic() - started


@needs_redis
def test_a_waiter_enqueued_while_subscribed_reads_only_after_its_message(monkeypatch):
    _subscribed_listener(monkeypatch)
    finisher = FinishLater()
    ids = [f"gen_skip{RUN}{i}" for i in range(20)]
    started = time.monotonic()
    threads, results = _wait_all(ids, finisher, enqueued_after=started)
    finisher.finish(ids, after=0.3)
    for thread in threads:
        thread.join()
    completion.waiters.reset()
    assert results == dict.fromkeys(ids, True)
    assert time.monotonic() - started < 10  # woken by the messages, not the read at the 30 s timeout
    assert finisher.reads == 20  # no read before waiting: one each, after its message


@needs_redis
def test_a_finish_heard_before_its_waiter_registers_is_not_missed(monkeypatch):
    """The worker can finish before the web's request starts to wait: the listener remembers it."""
    _subscribed_listener(monkeypatch)
    finisher = FinishLater()
    enqueued = time.monotonic()
    finisher.finish(["gen_early"], after=0)
    time.sleep(0.3)  # the message has come and gone, with no waiter yet
    assert _wait_one("gen_early", finisher, enqueued_after=enqueued, monkeypatch=monkeypatch) < 1  # not the re-check
    assert finisher.reads == 1


@needs_redis
def test_a_waiter_enqueued_before_the_subscription_reads_first(monkeypatch):
    """A finish published before the listener subscribed was heard by no one: the row tells."""
    subscribed = _subscribed_listener(monkeypatch)
    finisher = FinishLater()
    finisher.done.add("gen_before")  # finished, never published to this listener
    assert _wait_one("gen_before", finisher, enqueued_after=subscribed - 1, monkeypatch=monkeypatch) < 1
    assert finisher.reads == 1
