"""Real concurrency on the real database: threads, each with its own connection, released
together by a barrier. On PostgreSQL the account row lock serialises credit movements; on
SQLite the IMMEDIATE transactions do.

The HTTP test really commits, so on_commit sends its 10 accepted generations to the configured
broker (nothing consumes them unless a worker is running in the same session); the mixed test
stubs the enqueue so no worker can finish or refund its generations behind its back.
"""

import json
import queue
import random
import threading
import time
from collections import Counter
from datetime import timedelta
from unittest.mock import patch

import pytest
from django.db.models import Sum
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import ChargeAllocation, CreditAccount, CreditGrant, LedgerEntry, LedgerKind
from billing.selectors import ledger_drift
from billing.services import account_get_or_create, credits_expire_due, credits_grant
from generations.models import Generation, GenerationStatus
from generations.services import generation_fail
from hub.http.errors import InsufficientCredits
from tests.concurrency import run_together
from tests.factories import bearer, create_generation, make_key, make_user

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/images/generations"
BODY = {"model": "gpt-image-2", "prompt": "p", "size": "1024x1024", "quality": "high", "n": 1, "async": True}
# Each thread holds one database connection; PostgreSQL here allows 100 in all (shared with the
# test's own connection, the session worker and whoever else uses the server), so 100 requests
# go through 50 concurrent connections.
THREADS = 50
REQUESTS = 100


def assert_ledger_is_one_sequence(account) -> None:
    """Rows in insertion order chain balance_after → balance_after: no two movements interleaved."""
    running = 0
    for entry in LedgerEntry.objects.filter(account=account).order_by("id"):
        running += entry.amount
        assert entry.balance_after == running, (entry.pk, entry.kind, entry.amount, entry.balance_after, running)
        assert running >= 0
    assert CreditAccount.objects.get(pk=account.pk).balance == running


def test_100_concurrent_requests_for_a_balance_of_10_charge_exactly_10(unconsumed_queue):
    user = make_user(credits=80)  # price 8 each → exactly 10 generations
    auth = bearer(make_key(user))
    account = account_get_or_create(user=user)
    responses: list[tuple[int, dict]] = []

    def client_thread():
        client = APIClient()
        for _ in range(REQUESTS // THREADS):
            response = client.post(URL, data=json.dumps(BODY), content_type="application/json", **auth)
            responses.append((response.status_code, response.json()))

    started = time.monotonic()
    run_together([client_thread] * THREADS)
    elapsed = time.monotonic() - started

    assert len(responses) == REQUESTS
    assert Counter(status for status, _ in responses) == {202: 10, 402: 90}, elapsed
    refused = [body for status, body in responses if status == 402]
    assert all(body["error"]["code"] == "insufficientCredits" for body in refused)
    accepted = {body["id"] for status, body in responses if status == 202}
    assert len(accepted) == 10

    account.refresh_from_db()
    assert account.balance == 0
    charges = LedgerEntry.objects.filter(account=account, kind=LedgerKind.CHARGE)
    assert sorted(charges.values_list("amount", flat=True)) == [-8] * 10
    assert set(charges.values_list("generation_id", flat=True)) == accepted
    assert set(Generation.objects.filter(owner=user).values_list("id", flat=True)) == accepted
    assert not LedgerEntry.objects.filter(account=account, balance_after__lt=0).exists()
    assert_ledger_is_one_sequence(account)
    assert ledger_drift() == []


def test_concurrent_grants_spends_refunds_and_expiries_keep_the_ledger_consistent():
    user = make_user(credits=0)
    account = account_get_or_create(user=user)
    refund_queues = [queue.Queue(), queue.Queue()]
    lock = threading.Lock()
    tally = Counter()
    charged: dict[str, int] = {}
    refunded: dict[str, int] = {}
    refund_attempts = Counter()
    latest_expiry = [timezone.now()]
    spenders_done, granter_done = threading.Event(), threading.Event()

    def granter():
        rng = random.Random(1)
        for i in range(16):
            amount = rng.randint(5, 40)
            expires_at = None if i % 2 else timezone.now() + timedelta(seconds=rng.uniform(0.05, 0.4))
            credits_grant(account=account, amount=amount, expires_at=expires_at)
            with lock:
                tally["granted"] += amount
                if expires_at:
                    latest_expiry[0] = max(latest_expiry[0], expires_at)
            time.sleep(rng.uniform(0.02, 0.08))

    def spender(seed):
        def run():
            rng = random.Random(seed)
            for _ in range(15):
                quality = rng.choice(["low", "high"])
                try:
                    generation = create_generation(user, n=rng.randint(1, 2), quality=quality, prompt="p")
                except InsufficientCredits:
                    with lock:
                        tally["refused"] += 1
                else:
                    with lock:
                        charged[generation.id] = generation.credits_requested
                    if rng.random() < 0.5:  # both refunders race to fail this one, a little later
                        not_before = time.monotonic() + rng.uniform(0, 0.3)
                        for q in refund_queues:
                            q.put((generation.id, not_before))
                time.sleep(rng.uniform(0.02, 0.06))

        return run

    def refunder(q):
        def run():
            while True:
                try:
                    generation_id, not_before = q.get(timeout=0.05)
                except queue.Empty:
                    if spenders_done.is_set():
                        return
                    continue
                time.sleep(max(0.0, not_before - time.monotonic()))
                refunds = generation_fail(generation_id=generation_id, code="test", message="race test")
                with lock:
                    refund_attempts[generation_id] += 1
                    if refunds:
                        assert generation_id not in refunded, f"{generation_id} failed twice"
                        refunded[generation_id] = charged[generation_id]

        return run

    def sweeper():
        while not (spenders_done.is_set() and granter_done.is_set()):
            credits_expire_due(account=account)
            time.sleep(0.01)

    def finishing(target, event, parties):
        def run():
            try:
                target()
            finally:
                with lock:
                    parties[0] -= 1
                    if parties[0] == 0:
                        event.set()

        return run

    spenders_left = [3]
    granter_left = [1]
    threads = [
        finishing(granter, granter_done, granter_left),
        *(finishing(spender(seed), spenders_done, spenders_left) for seed in (11, 12, 13)),
        refunder(refund_queues[0]),
        refunder(refund_queues[1]),
        sweeper,
    ]
    with patch("generations.services.submit.generation_enqueue"):  # keep these generations away from any worker
        run_together(threads)

    # let every expiring grant run out, then one last sweep
    time.sleep(max(0.0, (latest_expiry[0] - timezone.now()).total_seconds()) + 0.05)
    credits_expire_due(account=account)

    assert charged and refunded, (tally, charged, refunded)
    assert set(refund_attempts.values()) == {2}  # every chosen generation was fought over…
    assert len(refunded) == len(refund_attempts)  # …and refunded exactly once

    rows = LedgerEntry.objects.filter(account=account)
    charge_rows = dict(rows.filter(kind=LedgerKind.CHARGE).values_list("generation_id", "amount"))
    refund_rows = dict(rows.filter(kind=LedgerKind.REFUND).values_list("generation_id", "amount"))
    assert charge_rows == {g: -a for g, a in charged.items()}
    assert refund_rows == refunded
    assert rows.filter(kind=LedgerKind.GRANT).aggregate(s=Sum("amount"))["s"] == tally["granted"]
    expired = -(rows.filter(kind=LedgerKind.EXPIRE).aggregate(s=Sum("amount"))["s"] or 0)

    account.refresh_from_db()
    expected = tally["granted"] - sum(charged.values()) + sum(refunded.values()) - expired
    assert account.balance == expected
    assert ledger_drift() == []
    assert_ledger_is_one_sequence(account)

    # Every grant accounts for each of its credits: still there, expired, or in an unrefunded charge.
    now = timezone.now()
    for grant in CreditGrant.objects.filter(account=account):
        expired_here = -(rows.filter(kind=LedgerKind.EXPIRE, grant=grant).aggregate(s=Sum("amount"))["s"] or 0)
        outstanding = (
            ChargeAllocation.objects.filter(grant=grant)
            .exclude(entry__generation_id__in=list(refunded))
            .aggregate(s=Sum("amount"))["s"]
            or 0
        )
        assert grant.amount == grant.remaining + expired_here + outstanding, grant.pk
        assert 0 <= grant.remaining <= grant.amount
        if grant.expires_at is not None and grant.expires_at <= now:
            assert grant.remaining == 0
    assert account.balance == sum(
        CreditGrant.objects.filter(account=account, expires_at__isnull=True).values_list("remaining", flat=True)
    )
    for generation_id, amount in refunded.items():
        generation = Generation.objects.get(pk=generation_id)
        assert (generation.status, generation.credits_refunded) == (GenerationStatus.FAILED, amount)
