"""A worker SIGKILLed while its calls hold an upstream's slots: the slots come back when their
lease lapses (nobody renews them), and later generations run; the killed one is re-run."""

import os
import signal

import pytest

from tests.conftest import until
from tests.factories import bearer, make_key, make_user
from tests.faults.conftest import sweep_until, wait_for_status
from tests.reconcile import assert_reconciled
from tests.upstreams.conftest import KEY
from upstreams.state import upstream_state

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
URL = "/api/v1/images/generations"
BODY = {"model": "gpt-image-1", "size": "1024x1024", "quality": "low", "n": 1, "async": True}


@pytest.mark.slow
def test_a_killed_workers_upstream_slots_come_back(
    api, openai_model, make_upstream, fake_openai, start_worker, settings
):
    if not settings.REDIS_URL:
        pytest.skip("upstream budgets live in Redis")
    user = make_user(credits=100)
    auth = bearer(make_key(user))
    upstream = make_upstream("tight", KEY, concurrency=2)
    fake_openai.plan("slow", seconds=3, times=2)  # longer than the 2 s lease: held by renewal
    worker = start_worker()
    lost = [api.post(URL, {**BODY, "prompt": f"lost {i}"}, format="json", **auth).json()["id"] for i in range(2)]
    assert until(lambda: len(fake_openai.requests) == 2, timeout=20)
    assert upstream_state(upstream.pk).slots_in_use == 2
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()

    start_worker()
    after = api.post(URL, {**BODY, "prompt": "after"}, format="json", **auth).json()["id"]
    assert wait_for_status(after, ["succeeded", "failed"], timeout=30).status == "succeeded"
    for generation_id in lost:  # their leases lapsed too: re-run, finished
        assert sweep_until(generation_id).status == "succeeded"
    assert until(lambda: upstream_state(upstream.pk).slots_in_use == 0, timeout=5)
    assert (
        max(r.received_at for r in fake_openai.requests if r.body["prompt"] == "after")
        - min(r.received_at for r in fake_openai.requests)
        >= 1.5
    )  # it waited for the dead worker's slots to lapse (2 s lease)
    assert_reconciled()
