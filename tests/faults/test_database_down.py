"""A generation task that cannot reach the database before its claim is retried with backoff,
not acknowledged as done (seen under load: "too many clients" left charged generations queued
until the sweeper failed them 14 minutes later)."""

import time

import pytest
from django.db import connection

from billing.models import CreditAccount
from tests.factories import create_generation
from tests.fakes.tcp_proxy import SwitchableProxy
from tests.faults.conftest import wait_for_status
from tests.reconcile import assert_reconciled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.mark.slow
@pytest.mark.skipif(connection.vendor != "postgresql", reason="proxies a PostgreSQL server")
def test_a_claim_that_cannot_reach_the_database_is_retried_until_it_can(customer, start_worker):
    user, _, _ = customer
    db = connection.settings_dict
    proxy = SwitchableProxy((db["HOST"], int(db["PORT"])))
    proxy.down()
    worker = start_worker(
        DATABASE_URL=f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@127.0.0.1:{proxy.port}/{db['NAME']}",
        DATABASE_POOL_TIMEOUT="1",
    )
    try:
        generation = create_generation(user, n=1)  # charged and sent; the worker cannot claim it
        deadline = time.monotonic() + 30
        while "retry: Retry in" not in worker.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "retry: Retry in" in worker.output(), worker.output()[-3000:]
        proxy.up = True
        finished = wait_for_status(generation.id, {"succeeded", "failed"}, timeout=60)
    finally:
        proxy.close()
    assert (finished.status, finished.attempts) == ("succeeded", 1)
    assert CreditAccount.objects.get(user=user).balance == 120 - 2
    assert_reconciled()
