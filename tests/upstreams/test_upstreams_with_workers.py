"""Upstreams with real worker processes against the fake provider, which holds each key to its
limits: two workers share one budget; a 429 cools the upstream down for both and shrinks its
learned limit; a failing upstream's circuit opens, its traffic fails over and it is probed back;
a credential never reaches a response or a log line."""

import time

import pytest

from billing.models import CreditAccount
from generations.models import Generation
from hub.infra.metrics import exposition
from tests.conftest import until
from tests.factories import bearer, make_key, make_user
from tests.faults.conftest import wait_for_status
from tests.reconcile import assert_reconciled
from tests.upstreams.conftest import KEY, OTHER_KEY
from upstreams.state import upstream_state

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
URL = "/api/v1/images/generations"
BODY = {"model": "gpt-image-1", "size": "1024x1024", "quality": "low", "n": 1, "async": True}


@pytest.fixture
def auth(openai_model, settings):
    if not settings.REDIS_URL:
        pytest.skip("budgets and circuits are shared through Redis")
    user = make_user(credits=1000)
    return user, bearer(make_key(user))


def submit(api, auth, count: int, prompt: str = "p") -> list[str]:
    ids = []
    for index in range(count):
        response = api.post(URL, {**BODY, "prompt": f"{prompt} {index}"}, format="json", **auth[1])
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    return ids


def all_finished(ids: list[str], timeout: float = 60) -> list[Generation]:
    return [wait_for_status(generation_id, ["succeeded", "failed"], timeout=timeout) for generation_id in ids]


@pytest.mark.slow
def test_two_workers_share_one_upstream_budget(api, auth, make_upstream, fake_openai, start_worker):
    fake_openai.key(KEY, concurrency=2).plan("slow", seconds=0.4, times=None)
    upstream = make_upstream("shared", KEY, concurrency=2)
    start_worker(concurrency=8)
    start_worker(concurrency=8)
    generations = all_finished(submit(api, auth, 10, prompt="shared"))
    assert [g.status for g in generations] == ["succeeded"] * 10
    # each sent once, never a 429 (the server serves the whole session: this test's calls by prompt)
    sent = [(r.body["prompt"], r.status, round(r.received_at, 2)) for r in fake_openai.requests]
    ours = sorted((prompt, status) for prompt, status, _ in sent if prompt.startswith("shared "))
    assert ours == [(f"shared {index}", 200) for index in range(10)], sent
    assert fake_openai.key_stats(KEY).max_in_flight == 2
    assert until(lambda: upstream_state(upstream.pk).slots_in_use == 0, timeout=5)  # every slot given back
    assert_reconciled()


@pytest.mark.slow
def test_a_429_cools_the_upstream_down_for_every_worker_and_shrinks_its_limit(
    api, auth, make_upstream, fake_openai, start_worker
):
    upstream = make_upstream("learning", KEY)  # no configured limit: learned
    fake_openai.plan("429", retry_after=2)  # the first call
    start_worker(concurrency=1)  # busy with the first generation while it waits out the cooldown…
    start_worker(concurrency=1)  # …so the second goes to this one
    (first,) = submit(api, auth, 1, prompt="first")
    assert until(lambda: [r.status for r in fake_openai.requests] == [429], timeout=20)
    limited_at = fake_openai.requests[0].received_at
    (second,) = submit(api, auth, 1, prompt="second")
    assert [g.status for g in all_finished([first, second])] == ["succeeded", "succeeded"]
    later = fake_openai.requests[1:]
    assert sorted(r.body["prompt"] for r in later) == ["first 0", "second 0"]
    assert all(r.received_at - limited_at >= 1.8 for r in later)  # neither worker sent during the cooldown
    # one call was in flight at the 429: the limit 1 (× 0.9, at least 1) and its ceiling 1; at the
    # ceiling a success adds 1/(limit × PROBE_WINDOWS): a probe above it every ten windows
    state = upstream_state(upstream.pk)
    assert (state.learned_limit, state.ceiling) == (pytest.approx(1 + 1 / 10 + 1 / 11), 1)
    assert_reconciled()


@pytest.mark.slow
def test_a_failing_upstream_opens_fails_over_is_probed_and_closes(
    api, auth, make_upstream, fake_openai, start_worker, settings
):
    user, _ = auth
    primary = make_upstream("primary", KEY, priority=0)
    make_upstream("secondary", OTHER_KEY, priority=1)
    fake_openai.key(KEY, failing=500)
    start_worker(concurrency=4, HUB_UPSTREAM_FAILURE_THRESHOLD="2", HUB_UPSTREAM_COOLOFF_SECONDS="1.5")
    balance = CreditAccount.objects.get(user=user).balance

    (first,) = all_finished(submit(api, auth, 1))
    assert first.status == "succeeded"  # two 500s on the primary, then the secondary
    assert fake_openai.key_statuses(KEY) == {500: 2}
    assert fake_openai.key_statuses(OTHER_KEY) == {200: 1}
    assert CreditAccount.objects.get(user=user).balance == balance - first.credits_requested  # charged once
    assert upstream_state(primary.pk).circuit == "open"
    settings.METRICS_TOKEN = "metrics-token-0123456789abcdef"
    assert 'hub_upstream_circuit_open{upstream="primary"} 1.0' in exposition(with_shared=True).decode()

    assert [g.status for g in all_finished(submit(api, auth, 3))] == ["succeeded"] * 3
    assert fake_openai.key_statuses(KEY) == {500: 2}  # open: nothing sent to it
    assert fake_openai.key_statuses(OTHER_KEY) == {200: 4}

    time.sleep(1.6)  # the cool-off: half-open; the probe fails, it opens again
    assert all_finished(submit(api, auth, 1))[0].status == "succeeded"
    assert fake_openai.key_statuses(KEY) == {500: 3}
    assert upstream_state(primary.pk).circuit == "open"

    fake_openai.key(KEY, failing=None)  # healthy again
    time.sleep(1.6)
    assert all_finished(submit(api, auth, 1))[0].status == "succeeded"
    assert fake_openai.key_statuses(KEY) == {500: 3, 200: 1}  # the probe
    assert upstream_state(primary.pk).circuit == "closed"
    assert all_finished(submit(api, auth, 2))[0].status == "succeeded"
    assert fake_openai.key_statuses(KEY) == {500: 3, 200: 3}  # its traffic is back
    assert_reconciled()


def test_a_rejected_prompt_is_not_tried_on_another_upstream(api, auth, make_upstream, fake_openai, start_worker):
    make_upstream("primary", KEY, priority=0)
    make_upstream("secondary", OTHER_KEY, priority=1)
    fake_openai.plan("400", message="Your prompt was rejected by the safety system")
    start_worker()
    (generation,) = all_finished(submit(api, auth, 1))
    assert (generation.status, generation.error_code) == ("failed", "provider_rejected")
    assert len(fake_openai.requests) == 1
    assert generation.credits_refunded == generation.credits_requested
    assert_reconciled()


@pytest.mark.slow
def test_a_credential_is_never_in_a_response_or_a_log_line(api, auth, make_upstream, fake_openai, start_worker):
    secret = "sk-upstream-not-known-to-the-provider-4242"
    make_upstream("stale", secret)
    fake_openai.keys.clear()  # the provider no longer knows the key: 401 quoting it back
    worker = start_worker(LOG_LEVEL="DEBUG")
    response = api.post(URL, {**BODY, "prompt": "p", "async": False}, format="json", **auth[1])
    assert response.status_code == 500
    assert fake_openai.requests[0].status == 401
    assert secret in fake_openai.requests[0].headers["authorization"]  # it was sent…
    assert secret not in response.content.decode()  # …and never shown
    assert "authentication failed" in response.json()["error"]["message"]
    assert until(lambda: "upstream stale" in worker.output(), timeout=5)
    assert secret not in worker.output()
    assert secret[8:-4] not in worker.output()
    assert_reconciled()


def test_a_generation_canceled_while_it_waits_for_a_slot_is_never_sent(
    api, auth, make_upstream, fake_openai, start_worker
):
    fake_openai.plan("slow", seconds=8, times=1)
    upstream = make_upstream("narrow", KEY, concurrency=1)
    start_worker(concurrency=4)
    first, second = submit(api, auth, 2)
    assert until(lambda: len(fake_openai.requests) == 1, timeout=20)  # the first holds the one slot…
    time.sleep(0.5)
    # …the second waits for it, in its model's fair order (workers.turns): queued, not yet claimed
    assert Generation.objects.get(pk=second).status == "queued"
    response = api.post(f"/api/v1/generations/{second}/cancel", **auth[1])
    assert response.status_code == 200, response.content
    assert all_finished([first])[0].status == "succeeded"
    time.sleep(1)  # the freed slot is not taken by the canceled generation
    assert [r.body["prompt"] for r in fake_openai.requests] == ["p 0"]
    assert Generation.objects.get(pk=second).status == "canceled"
    assert until(lambda: upstream_state(upstream.pk).slots_in_use == 0, timeout=5)
    assert_reconciled()
