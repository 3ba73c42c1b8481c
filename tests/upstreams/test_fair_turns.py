"""Fair turns with real worker processes: an upstream of one call at a time, slow calls, and a
backlog — another account's call, and an account's own sync call, go ahead of it; a waiting
generation shows its place in line; a canceled one stops waiting and takes no turn; nothing is
sent twice, and the credits reconcile."""

import os
import signal
import time

import pytest
import redis
from django.conf import settings
from django.urls import reverse

from generations import completion
from tests.conftest import until
from tests.factories import bearer, make_key, make_user
from tests.faults.conftest import sweep_until, wait_for_status
from tests.reconcile import assert_reconciled
from tests.upstreams.conftest import KEY

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.slow]
URL = "/api/v1/images/generations"
GET_URL = "/api/v1/generations"
BODY = {"model": "gpt-image-1", "size": "1024x1024", "quality": "low", "n": 1, "async": True}
CALL_SECONDS = 0.8


@pytest.fixture
def one_at_a_time(openai_model, make_upstream, fake_openai, start_worker, settings):
    """An upstream of one call at a time, each call CALL_SECONDS, and a worker with fewer task
    slots than the backlogs below (most of their tasks wait in the broker)."""
    if not settings.REDIS_URL:
        pytest.skip("fair turns are taken through Redis")
    fake_openai.key(KEY, concurrency=1).plan("slow", seconds=CALL_SECONDS, times=None)
    make_upstream("narrow", KEY, concurrency=1)
    return start_worker(concurrency=4)


def account():
    return bearer(make_key(make_user(credits=1000)))


def submit(api, auth, count: int, prompt: str) -> list[dict]:
    bodies = []
    for index in range(count):
        response = api.post(URL, {**BODY, "prompt": f"{prompt} {index}"}, format="json", **auth)
        assert response.status_code == 202, response.content
        bodies.append(response.json())
    return bodies


def call_started(fake_openai, prompt: str) -> float:
    (request,) = [r for r in fake_openai.requests if r.body["prompt"] == prompt]
    return request.received_at


def all_succeed(ids: list[str]) -> None:
    assert [wait_for_status(i, ["succeeded", "failed", "canceled"], timeout=60).status for i in ids] == [
        "succeeded"
    ] * len(ids)


def test_another_accounts_call_goes_ahead_of_a_backlog(api, one_at_a_time, fake_openai):
    backlog = [body["id"] for body in submit(api, account(), 8, "A")]
    assert until(lambda: len(fake_openai.requests) == 1, timeout=20)  # A's first call is in flight
    asked = time.monotonic()
    response = api.post(URL, {**BODY, "prompt": "B", "async": False}, format="json", **account())
    assert response.status_code == 200, response.content
    started = call_started(fake_openai, "B")
    # B's call waited for the one call in flight, not for A's backlog (8 × CALL_SECONDS)
    assert started - asked < CALL_SECONDS + 0.7
    assert len([r for r in fake_openai.requests if asked < r.received_at < started]) <= 1
    all_succeed(backlog)
    assert len(fake_openai.requests) == 9  # each generation sent once
    assert_reconciled()


def test_a_sync_call_goes_ahead_of_its_own_accounts_async_ones(api, one_at_a_time, fake_openai):
    auth = account()
    backlog = [body["id"] for body in submit(api, auth, 6, "async")]
    assert until(lambda: len(fake_openai.requests) == 1, timeout=20)
    asked = time.monotonic()
    response = api.post(URL, {**BODY, "prompt": "sync", "async": False}, format="json", **auth)
    assert response.status_code == 200, response.content
    assert call_started(fake_openai, "sync") - asked < CALL_SECONDS + 0.7
    all_succeed(backlog)
    assert len(fake_openai.requests) == 7
    assert_reconciled()


def test_a_start_is_announced_only_for_a_generation_someone_watches(api, one_at_a_time, fake_openai):
    """A worker's claim wakes the generation's events streams by a message on its own channel,
    published only when a web process subscribes to that channel (a watch): the worker asks in its
    turn's round trip, and a start nobody hears costs no publish."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    observer, watcher = client.pubsub(), client.pubsub()
    observer.psubscribe(completion.STARTED_PREFIX + "*")  # a pattern: not counted as a watch
    bodies = submit(api, account(), 3, "announced")  # one call at a time: the last two wait their turn
    ids = [body["id"] for body in bodies]
    watcher.subscribe(completion.started_channel(ids[2]))  # as a web process does while an events stream watches
    all_succeed(ids)
    heard = set()
    while (message := observer.get_message(timeout=1)) is not None:
        if message["type"] == "pmessage" and message["data"] == b"started":
            heard.add(message["channel"].decode().removeprefix(completion.STARTED_PREFIX))
    assert heard & set(ids) == {ids[2]}
    assert len(fake_openai.requests) == 3
    observer.close(), watcher.close()
    assert_reconciled()


def test_a_waiting_generation_shows_its_place_in_line(api, one_at_a_time, fake_openai):
    auth = account()
    bodies = submit(api, auth, 5, "line")
    assert bodies[-1]["queue_position"] >= 2  # in the 202: waiting behind others
    last = bodies[-1]["id"]
    seen = []
    while True:
        body = api.get(f"{GET_URL}/{last}", **auth).json()
        if body["status"] != "queued":
            break
        seen.append(body["queue_position"])
        time.sleep(0.1)
    places = [place for place in seen if place is not None]
    # taken from the line and about to be claimed: still queued for a moment, with no place
    assert seen == places + [None] * (len(seen) - len(places))
    assert places and places[0] >= 2 and places == sorted(places, reverse=True)  # it moves up, never back
    assert len(set(places)) >= 2
    assert body["queue_position"] is None  # running or finished: not waiting
    all_succeed([b["id"] for b in bodies])
    assert len(fake_openai.requests) == 5
    assert_reconciled()


def test_the_account_pages_show_the_place_in_line(api, one_at_a_time, fake_openai, client):
    user = make_user(credits=1000)
    auth = bearer(make_key(user))
    bodies = submit(api, auth, 4, "page")
    client.force_login(user)
    waiting = [b for b in bodies if api.get(f"{GET_URL}/{b['id']}", **auth).json()["queue_position"]]
    assert waiting
    assert "in line" in client.get(reverse("accounts:generations")).content.decode()
    page = client.get(reverse("accounts:generation", args=[waiting[-1]["id"]])).content.decode()
    assert "in line" in page
    all_succeed([b["id"] for b in bodies])
    assert "in line" not in client.get(reverse("accounts:generations")).content.decode()
    assert_reconciled()


def test_a_canceled_waiting_generation_takes_no_turn(api, one_at_a_time, fake_openai):
    auth = account()
    first, canceled, last = (body["id"] for body in submit(api, auth, 3, "c"))
    assert until(lambda: len(fake_openai.requests) == 1, timeout=20)
    response = api.post(f"{GET_URL}/{canceled}/cancel", **auth)
    assert response.status_code == 200, response.content
    assert api.get(f"{GET_URL}/{canceled}", **auth).json()["queue_position"] is None
    all_succeed([first, last])
    assert [r.body["prompt"] for r in fake_openai.requests] == ["c 0", "c 2"]  # never sent
    # the last one's call followed the first's: the canceled one held no slot in between
    assert call_started(fake_openai, "c 2") - call_started(fake_openai, "c 0") < 2 * CALL_SECONDS
    assert_reconciled()


def test_a_generation_canceled_while_its_call_waits_out_a_cooldown_stops_waiting(
    api, openai_model, make_upstream, fake_openai, start_worker, settings
):
    if not settings.REDIS_URL:
        pytest.skip("cooldowns are shared through Redis")
    make_upstream("cooling", KEY)
    fake_openai.plan("429", retry_after=60)  # the first call: the upstream cools down for a minute
    worker = start_worker(concurrency=1)
    auth = account()
    (generation,) = (body["id"] for body in submit(api, auth, 1, "cooled"))
    assert until(lambda: len(fake_openai.requests) == 1, timeout=20)
    assert api.post(f"{GET_URL}/{generation}/cancel", **auth).status_code == 200
    assert until(lambda: "no longer this attempt's" in worker.output(), timeout=15)
    assert len(fake_openai.requests) == 1
    assert_reconciled()


def test_a_killed_worker_strands_no_waiting_generation(
    api, openai_model, make_upstream, fake_openai, start_worker, settings
):
    """Its tasks (taken from the broker, never acknowledged) are gone with it, and so is the
    attempt it was running: the sweeper hands the running one back and sends tasks again for the
    waiting ones once nothing is taken from their order for GENERATION_RESEND_AFTER_SECONDS."""
    if not settings.REDIS_URL:
        pytest.skip("fair turns are taken through Redis")
    settings.GENERATION_RESEND_AFTER_SECONDS = 3
    fake_openai.plan("slow", seconds=CALL_SECONDS, times=None)
    make_upstream("narrow", KEY, concurrency=1)
    worker = start_worker(concurrency=4)
    ids = [body["id"] for body in submit(api, account(), 5, "k")]
    assert until(lambda: len(fake_openai.requests) == 1, timeout=20)
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()

    start_worker(concurrency=4)
    for generation_id in ids:
        assert sweep_until(generation_id, timeout=60).status == "succeeded"
    prompts = [r.body["prompt"] for r in fake_openai.requests]
    assert sorted(set(prompts)) == [f"k {i}" for i in range(5)]
    assert len(prompts) <= 6  # only the call in flight at the kill was sent again
    assert_reconciled()
