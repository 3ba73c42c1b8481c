"""Workers killed mid-generation: the work is redone or failed and refunded — never stuck."""

import os
import signal

import pytest

from billing.models import CreditAccount, LedgerEntry
from generations.models import Generation, GenerationEvent
from tests.faults.conftest import sweep_until, wait_for_status
from tests.reconcile import assert_reconciled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
URL = "/api/v1/images/generations"


def _submit(api, auth, prompt: str) -> str:
    body = {"model": "gpt-image-2", "prompt": prompt, "size": "1024x1024", "quality": "low", "n": 2, "async": True}
    response = api.post(URL, data=body, format="json", **auth)
    assert response.status_code == 202
    return response.json()["id"]


@pytest.mark.slow
def test_killed_pool_child_is_redelivered_and_completes(api, customer, start_worker):
    user, _, auth = customer
    worker = start_worker(pool="prefork", concurrency=1)
    generation_id = _submit(api, auth, "slow [sleep:2]")
    wait_for_status(generation_id, ["running"])
    (child,) = worker.pool_children()
    os.kill(child, signal.SIGKILL)

    generation = sweep_until(generation_id)
    assert generation.status == "succeeded"
    assert generation.attempts == 2
    assert generation.images.count() == 2
    assert CreditAccount.objects.get(user=user).balance == 116
    assert not LedgerEntry.objects.filter(generation_id=generation_id, kind="refund").exists()
    assert_reconciled()


@pytest.mark.slow
def test_killed_worker_group_is_recovered_by_the_sweeper(api, customer, start_worker):
    user, _, auth = customer
    worker = start_worker()
    generation_id = _submit(api, auth, "slow [sleep:2]")
    wait_for_status(generation_id, ["running"])
    os.killpg(worker.proc.pid, signal.SIGKILL)  # what an OOM kill of the pod does
    worker.proc.wait()

    start_worker()  # the replacement pod
    generation = sweep_until(generation_id)
    assert (generation.status, generation.attempts) == ("succeeded", 2)
    # Its history: the lost attempt's claim, its retry, the second attempt (the first one's
    # provider call was never finished: its events would have come with the finish).
    history = GenerationEvent.objects.filter(generation_id=generation_id).order_by("created_at", "id")
    assert [(event.kind, event.attempt, event.outcome) for event in history] == [
        ("queued", 0, ""),
        ("claimed", 1, ""),
        ("retried", 1, "worker_lost"),
        ("claimed", 2, ""),
        ("provider_call_started", 2, ""),
        ("provider_call_ended", 2, "ok"),
        ("succeeded", 2, ""),
    ]
    assert CreditAccount.objects.get(user=user).balance == 116
    assert_reconciled()


@pytest.mark.slow
def test_generation_that_keeps_killing_workers_is_failed_and_refunded(api, customer, start_worker, settings):
    settings.GENERATION_MAX_ATTEMPTS = 2
    user, _, auth = customer
    generation_id = _submit(api, auth, "poison [sleep:30]")
    for attempt in (1, 2):
        worker = start_worker(GENERATION_MAX_ATTEMPTS="2")
        wait_for_status(generation_id, ["running"])
        assert Generation.objects.get(pk=generation_id).attempts == attempt
        os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait()
        if attempt == 1:
            assert sweep_until(generation_id, ["queued"]).status == "queued"  # re-queued for attempt 2

    generation = sweep_until(generation_id)
    assert (generation.status, generation.error_code) == ("failed", "worker_lost")
    assert generation.credits_refunded == 4
    assert CreditAccount.objects.get(user=user).balance == 120
    assert_reconciled()


def test_sigterm_lets_in_flight_work_finish(api, customer, start_worker):
    worker = start_worker()
    generation_id = _submit(api, customer[2], "graceful [sleep:2]")
    wait_for_status(generation_id, ["running"])
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=30) == 0
    generation = Generation.objects.get(pk=generation_id)
    assert generation.status == "succeeded"
    assert generation.attempts == 1
    assert_reconciled()
