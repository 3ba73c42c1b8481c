"""A generation's row, its charge and its key's usage are one statement on PostgreSQL
(generations.services.submit._charged, after the account lock in the same round trip) and the
same writes one after the other in a transaction elsewhere — or when the statement leaves the
charge to the row-by-row path. Both write the same rows; the statement charges only what the
row-by-row path would charge the same way."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH, MAX_CACHED_STATEMENT_PARAMS

from apikeys.models import ApiKeyUsage
from apikeys.services import api_key_create
from billing.lock_objects import account_lock_then
from billing.models import ChargeAllocation, CreditAccount, CreditGrant, LedgerEntry
from billing.selectors import ledger_drift
from billing.services import account_get_or_create, credits_charge, credits_grant
from generations.models import Generation
from generations.services import generation_create, submit
from hub.http.errors import InsufficientCredits
from tests.conftest import until
from tests.factories import make_user

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the one statement is PostgreSQL's")

SOON = timedelta(days=1)
# Fields every generation has its own value of; the rest must be equal between the two paths.
OWN_FIELDS = {"id", "owner", "api_key", "created_at", "deadline_at", "enqueued_at"}


def _funded(*grants):
    """A user with (amount, expires in) grants and an API key."""
    user = make_user()
    account = account_get_or_create(user=user)
    for amount, expires_in in grants:
        credits_grant(
            account=account, amount=amount, expires_at=None if expires_in is None else timezone.now() + expires_in
        )
    key, _ = api_key_create(owner=user, name="paths")
    return user, account, key


def _create(user, key, *, n: int = 2, quality: str = "high") -> Generation:
    return generation_create(
        owner=user,
        api_key=key,
        model_id="gpt-image-2",
        prompt="A lighthouse at dawn",
        size="1024x1024",
        quality=quality,
        n=n,
        is_async=True,
        references=[],
    )


def _rows(account, key) -> dict:
    grants = list(CreditGrant.objects.filter(account=account).order_by("pk"))
    index = {grant.pk: i for i, grant in enumerate(grants)}
    generation = Generation.objects.get(owner=account.user)
    return {
        "generation": {
            field.attname: getattr(generation, field.attname)
            for field in Generation._meta.concrete_fields
            if field.name not in OWN_FIELDS
        },
        "balance": CreditAccount.objects.get(pk=account.pk).balance,
        "grants": [grant.remaining for grant in grants],
        "ledger": [
            (e.kind, e.amount, e.balance_after, e.generation_id == generation.id, e.memo)
            for e in LedgerEntry.objects.filter(account=account).order_by("pk")
        ],
        "allocations": sorted(
            (index[a.grant_id], a.amount) for a in ChargeAllocation.objects.filter(entry__account=account)
        ),
        "usage": list(ApiKeyUsage.objects.filter(api_key=key).values_list("images", "credits_charged")),
    }


@pytest.mark.django_db
def test_one_statement_and_the_transaction_write_the_same_rows(monkeypatch):
    user, account, key = _funded((5, SOON), (10, None), (7, SOON * 2))
    with CaptureQueriesContext(connection) as queries:
        made = _create(user, key)  # 2 × 8 credits
    writes = [query["sql"] for query in queries if "FOR UPDATE" in query["sql"] or "INSERT" in query["sql"]]
    # The generation's row, the charge and the usage in one statement (after the account lock,
    # sent on the driver's cursor in the same round trip).
    assert len(writes) == 1 and "charge_generation" in writes[0], writes
    assert not made._state.adding
    one = _rows(account, key)

    monkeypatch.setattr(submit, "ONE_STATEMENT_CREATE", False)
    user, account, key = _funded((5, SOON), (10, None), (7, SOON * 2))
    _create(user, key)
    assert _rows(account, key) == one
    # 16 drawn soonest-expiring first: 5, then 7, then 4 of the never-expiring 10.
    assert one["grants"] == [0, 6, 0] and one["balance"] == 6
    assert one["allocations"] == [(0, 5), (1, 4), (2, 7)]
    assert one["ledger"][-1] == ("charge", -16, 6, True, "2 × gpt-image-2")
    assert one["usage"] == [(2, 16)]
    assert one["generation"]["status"] == "queued" and one["generation"]["credits_requested"] == 16
    assert ledger_drift() == []


@pytest.mark.django_db
def test_the_statement_stays_within_psycopgs_cache_of_parsed_queries(monkeypatch):
    """Past 4,096 bytes or 50 parameters psycopg parses a statement's text again on every run
    (psycopg._queries): the generation's statement with all its writes (a key's usage, the
    queued event) stays within both."""
    statements = []

    def lock_then(account_id, sql, params):
        statements.append((sql, params))
        return account_lock_then(account_id, sql, params)

    monkeypatch.setattr(submit, "account_lock_then", lock_then)
    user, account, key = _funded((20, None))
    _create(user, key)
    assert Generation.objects.filter(owner=user).count() == 1
    [(sql, params)] = statements
    assert "charge_usage" in sql and "charge_event" in sql
    assert len(sql.encode()) <= MAX_CACHED_STATEMENT_LENGTH, len(sql.encode())
    assert len(params) <= MAX_CACHED_STATEMENT_PARAMS, len(params)


@pytest.mark.django_db
def test_a_grant_due_to_expire_is_expired_in_the_ledger_before_the_charge():
    user, account, key = _funded((4, SOON), (20, None))
    CreditGrant.objects.filter(account=account, expires_at__isnull=False).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    _create(user, key, n=1)
    rows = _rows(account, key)
    assert [entry[:3] for entry in rows["ledger"]] == [
        ("grant", 4, 4),
        ("grant", 20, 24),
        ("expire", -4, 20),
        ("charge", -8, 12),
    ]
    assert rows["grants"] == [0, 12] and rows["usage"] == [(1, 8)]
    assert ledger_drift() == []


@pytest.mark.django_db
def test_a_short_balance_is_refused_and_writes_nothing():
    user, account, key = _funded((7, None))
    with pytest.raises(InsufficientCredits, match="8 needed, 7 available"):
        _create(user, key, n=1)
    assert not Generation.objects.filter(owner=user).exists()
    rows_after = (CreditAccount.objects.get(pk=account.pk).balance, LedgerEntry.objects.filter(account=account).count())
    assert rows_after == (7, 1)
    assert not ApiKeyUsage.objects.filter(api_key=key).exists()


def _run_while_held(hold, user, key):
    """Run `hold` in a transaction of one thread; while it holds the account lock, a one-image
    generation (8 credits) waits for that lock in another; then commit `hold`. What the charge
    returned or raised."""
    held, release, done = threading.Event(), threading.Event(), []

    def holding():
        with transaction.atomic():
            hold()
            held.set()
            release.wait(10)
        connection.close()

    def charging():
        try:
            done.append(_create(user, key, n=1))
        except InsufficientCredits as exc:
            done.append(exc)
        connection.close()

    holder = threading.Thread(target=holding)
    holder.start()
    assert held.wait(10)
    charger = threading.Thread(target=charging)
    charger.start()
    assert until(_a_backend_waits_for_a_lock, timeout=10)
    release.set()
    holder.join(10)
    charger.join(10)
    assert done
    return done[0]


@pytest.mark.django_db(transaction=True)
def test_a_grant_committed_while_the_statement_waits_for_the_lock_is_spent_first(unconsumed_queue):
    """A grant another transaction made while the charge waited for the account lock is spent
    in its turn (it expires sooner, so first), not left out: the charge reads the grants after the
    lock is granted (billing.lock_objects.account_lock_then)."""
    user, account, key = _funded((10, None))
    made = _run_while_held(
        lambda: credits_grant(account=account, amount=5, expires_at=timezone.now() + SOON), user, key
    )
    assert isinstance(made, Generation)
    rows = _rows(account, key)
    assert rows["grants"] == [7, 0]  # the soon-expiring 5 first, then 3 of the 10
    assert rows["allocations"] == [(0, 3), (1, 5)] and rows["balance"] == 7
    assert ledger_drift() == []


def _a_backend_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_a_charge_committed_while_the_statement_waits_for_the_lock_is_seen(unconsumed_queue):
    """The grants the statement locks are their latest versions, drawn by the charge that held the
    lock: it must not draw them again from its older snapshot."""
    user, account, key = _funded((10, None), (6, SOON))
    refused = _run_while_held(
        lambda: credits_charge(account=account, amount=9, generation_id="gen_first_holder"), user, key
    )
    assert isinstance(refused, InsufficientCredits), refused  # 8 credits asked, 7 left
    assert CreditAccount.objects.get(pk=account.pk).balance == 7
    assert ledger_drift() == []
