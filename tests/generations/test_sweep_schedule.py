"""The periodic sweep runs inside the workers: each offers every quarter period, and the one
schedule row lets exactly one sweep per period happen, however many processes offer."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from billing.models import CreditAccount
from generations.models import Generation, SweepSchedule
from generations.sweeper import sweep_claim
from tests.concurrency import run_together
from tests.conftest import WorkerProcess, until
from tests.factories import create_generation, make_user
from tests.reconcile import assert_reconciled

PERIOD = timedelta(seconds=60)


@pytest.mark.django_db
def test_one_claim_per_period():
    assert SweepSchedule.objects.count() == 0
    assert sweep_claim(period=PERIOD) is True  # the first ever makes the row and sweeps
    assert sweep_claim(period=PERIOD) is False  # the next one is a period away
    due = SweepSchedule.objects.get().due_at
    assert timedelta(seconds=59) < due - timezone.now() <= PERIOD

    SweepSchedule.objects.update(due_at=timezone.now() - timedelta(seconds=1))  # a period went by
    assert sweep_claim(period=PERIOD) is True
    assert sweep_claim(period=PERIOD) is False
    assert SweepSchedule.objects.count() == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_concurrent_offers_make_one_sweep():
    """Eight offers at the same moment, each on its own connection, on a missing row and on a due
    one: one wins each time."""

    def offers() -> list[bool]:
        results = []
        run_together([lambda: results.append(sweep_claim(period=PERIOD))] * 8)
        return results

    assert sorted(offers()) == [False] * 7 + [True]  # no row yet: one insert wins
    SweepSchedule.objects.update(due_at=timezone.now() - timedelta(seconds=1))
    assert sorted(offers()) == [False] * 7 + [True]  # a due row: one update wins


@pytest.mark.slow
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_sweeps_on_its_own(unconsumed_queue):
    """No scheduler process: a worker (as deploy/bin/worker runs it) fails and refunds a
    generation left past its deadline, by itself, within a period."""
    user = make_user(credits=100)
    generation = create_generation(user, n=1, quality="high")
    Generation.objects.filter(pk=generation.id).update(deadline_at=timezone.now() - timedelta(minutes=5))
    assert CreditAccount.objects.get(user=user).balance == 92

    worker = WorkerProcess(
        name="sweeps", queues=unconsumed_queue, env_overrides={"WORKER_SWEEPS": "true", "SWEEPER_INTERVAL_SECONDS": "1"}
    ).start()
    try:
        failed = until(lambda: Generation.objects.get(pk=generation.id).status == "failed", timeout=20, interval=0.2)
    finally:
        worker.stop()
    generation.refresh_from_db()
    assert failed, worker.output()[-2000:]
    assert (generation.error_code, generation.credits_refunded) == ("timeout", 8)
    assert CreditAccount.objects.get(user=user).balance == 100
    assert SweepSchedule.objects.get().due_at > timezone.now() - timedelta(seconds=5)
    assert_reconciled()
