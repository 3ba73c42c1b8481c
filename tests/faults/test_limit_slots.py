"""A worker killed mid-generation does not leak its key's concurrency slot."""

import os
import signal

import pytest

from apikeys.models import ApiKey
from tests.conftest import until
from tests.factories import bearer, make_key, make_user
from tests.faults.conftest import sweep_until, wait_for_status
from tests.reconcile import assert_reconciled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
URL = "/api/v1/images/generations"
LOW = {"model": "gpt-image-2", "size": "1024x1024", "quality": "low", "async": True}


@pytest.mark.slow
@pytest.mark.worker
def test_a_killed_worker_does_not_leak_its_slot(api, start_worker, settings):
    if not settings.REDIS_URL:
        pytest.skip("slots live in Redis; the database fallback counts unfinished rows")
    user = make_user(credits=100)
    raw = make_key(user)
    ApiKey.objects.filter(owner=user).update(concurrency=1)
    auth = bearer(raw)
    worker = start_worker()
    generation_id = api.post(URL, {**LOW, "prompt": "slow [sleep:2]"}, format="json", **auth).json()["id"]
    wait_for_status(generation_id, ["running"])
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()
    assert api.post(URL, {**LOW, "prompt": "while it is lost"}, format="json", **auth).status_code == 429

    start_worker()
    assert sweep_until(generation_id).status == "succeeded"  # the lease lapsed, re-run, finished
    assert until(
        lambda: api.post(URL, {**LOW, "prompt": "after"}, format="json", **auth).status_code == 202, timeout=10
    )
    assert_reconciled()
