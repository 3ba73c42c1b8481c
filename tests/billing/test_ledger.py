"""Service-level rules of the credit ledger (billing.services), and the database's own guards.

Every test ends with `ledger_drift() == []` (autouse fixture) unless it corrupts on purpose.
"""

from contextlib import contextmanager
from datetime import timedelta
from unittest.mock import patch

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from billing.models import ChargeAllocation, CreditAccount, CreditGrant, LedgerEntry, LedgerKind
from billing.selectors import ledger_drift
from billing.services import (
    account_get_or_create,
    credits_charge,
    credits_clawback,
    credits_expire_all_due,
    credits_expire_due,
    credits_grant,
    credits_refund,
)
from hub.http.errors import HubError, InsufficientCredits, InvalidRequest

pytestmark = pytest.mark.django_db

_users = iter(range(1, 10**9))


@pytest.fixture
def corrupts():
    """Requested by a test that corrupts the ledger on purpose: skips the final drift check."""


@pytest.fixture(autouse=True)
def _no_drift_afterwards(request):
    yield
    if "corrupts" not in request.fixturenames:
        assert ledger_drift() == []


def new_account() -> CreditAccount:
    """A fresh, empty account (no password hashing: these tests never log in)."""
    user = get_user_model().objects.create(username=f"ledger-{next(_users)}@example.com")
    return account_get_or_create(user=user)


def days(n: float):
    return timezone.now() + timedelta(days=n)


@contextmanager
def clock_at(moment):
    """Every `timezone.now()` (billing, auto_now fields) answers `moment`."""
    with patch("django.utils.timezone.now", return_value=moment):
        yield


def balance(account) -> int:
    return CreditAccount.objects.get(pk=account.pk).balance


def remaining(*grants) -> list[int]:
    return [CreditGrant.objects.get(pk=g.pk).remaining for g in grants]


def allocations(entry) -> dict[int, int]:
    return {a.grant_id: a.amount for a in ChargeAllocation.objects.filter(entry=entry)}


def kinds(account) -> list[tuple[str, int]]:
    """(kind, amount) of the account's ledger rows, oldest first."""
    return list(LedgerEntry.objects.filter(account=account).order_by("id").values_list("kind", "amount"))


def snapshot(account) -> dict:
    return {
        "balance": balance(account),
        "grants": list(
            CreditGrant.objects.filter(account=account).order_by("pk").values_list("pk", "remaining", "expired_at")
        ),
        "ledger": list(LedgerEntry.objects.filter(account=account).order_by("pk").values_list("pk", "kind", "amount")),
        "allocations": ChargeAllocation.objects.filter(entry__account=account).count(),
    }


def assert_chain(account) -> None:
    """Every row's balance_after is the previous one plus its amount: the rows form one sequence."""
    running = 0
    for entry in LedgerEntry.objects.filter(account=account).order_by("id"):
        running += entry.amount
        assert entry.balance_after == running, (entry.pk, entry.kind, entry.amount, entry.balance_after, running)
        assert entry.balance_after >= 0
    assert balance(account) == running


# --- charge order -----------------------------------------------------------------------------


def test_charge_draws_soonest_expiring_first_and_never_expiring_last():
    account = new_account()
    forever = credits_grant(account=account, amount=10)  # created first, still drawn last
    late = credits_grant(account=account, amount=10, expires_at=days(30))
    soon = credits_grant(account=account, amount=10, expires_at=days(2))
    middle = credits_grant(account=account, amount=5, expires_at=days(10))

    first = credits_charge(account=account, amount=17, generation_id="gen_order_1")
    assert allocations(first) == {soon.pk: 10, middle.pk: 5, late.pk: 2}
    assert remaining(soon, middle, late, forever) == [0, 0, 8, 10]

    second = credits_charge(account=account, amount=10, generation_id="gen_order_2")
    assert allocations(second) == {late.pk: 8, forever.pk: 2}
    assert remaining(soon, middle, late, forever) == [0, 0, 0, 8]
    assert balance(account) == 8
    assert first.amount == -17 and first.kind == LedgerKind.CHARGE and first.balance_after == 18
    assert_chain(account)


def test_charge_among_equal_expiries_takes_the_older_grant_first():
    account = new_account()
    when = days(5)
    older = credits_grant(account=account, amount=4, expires_at=when)
    newer = credits_grant(account=account, amount=4, expires_at=when)
    entry = credits_charge(account=account, amount=5, generation_id="gen_tie")
    assert allocations(entry) == {older.pk: 4, newer.pk: 1}


# --- expiry -----------------------------------------------------------------------------------


def test_expired_grant_is_not_spendable_even_before_it_is_swept():
    account = new_account()
    forever = credits_grant(account=account, amount=10)
    expiring = credits_grant(account=account, amount=40, expires_at=days(1))
    later = days(1) + timedelta(seconds=1)

    with clock_at(later):
        assert balance(account) == 50  # cached balance still counts the unswept grant
        before = snapshot(account)
        with pytest.raises(InsufficientCredits) as excinfo:
            credits_charge(account=account, amount=20, generation_id="gen_expired_1")
        assert "20 needed, 10 available" in str(excinfo.value)
        assert snapshot(account) == before  # refused, and all-or-nothing

        # The expiry itself is written as an `expire` row by the next sweep.
        assert credits_expire_due(account=account) == 40
    rows = LedgerEntry.objects.filter(account=account, kind=LedgerKind.EXPIRE)
    assert [(r.amount, r.grant_id, r.balance_after) for r in rows] == [(-40, expiring.pk, 10)]
    expiring.refresh_from_db()
    assert expiring.remaining == 0 and expiring.expired_at == later
    assert remaining(forever) == [10]
    assert balance(account) == 10
    assert_chain(account)


def test_charge_expires_due_grants_first_and_records_it():
    account = new_account()
    forever = credits_grant(account=account, amount=10)
    expiring = credits_grant(account=account, amount=40, expires_at=days(1))

    with clock_at(days(1) + timedelta(minutes=1)):
        entry = credits_charge(account=account, amount=5, generation_id="gen_expired_2")
    assert kinds(account) == [("grant", 10), ("grant", 40), ("expire", -40), ("charge", -5)]
    assert allocations(entry) == {forever.pk: 5}  # nothing from the expired grant
    assert remaining(forever, expiring) == [5, 0]
    assert balance(account) == 5
    assert_chain(account)


def test_grant_expiring_exactly_now_is_expired_not_spendable():
    account = new_account()
    when = days(1)
    credits_grant(account=account, amount=7, expires_at=when)
    with clock_at(when):
        with pytest.raises(InsufficientCredits):
            credits_charge(account=account, amount=1, generation_id="gen_boundary")
        assert credits_expire_due(account=account) == 7
    assert balance(account) == 0


def test_sweeper_expires_every_account():
    a, b = new_account(), new_account()
    credits_grant(account=a, amount=3, expires_at=days(1))
    credits_grant(account=b, amount=4, expires_at=days(2))
    credits_grant(account=b, amount=5)
    with clock_at(days(3)):
        assert credits_expire_all_due() == 7
        assert credits_expire_all_due() == 0  # idempotent
    assert (balance(a), balance(b)) == (0, 5)


def test_a_grant_cannot_be_created_already_expired():
    account = new_account()
    for bad in (timezone.now() - timedelta(seconds=1), days(-5)):
        with pytest.raises(InvalidRequest):
            credits_grant(account=account, amount=5, expires_at=bad)
    with pytest.raises(InvalidRequest):
        credits_grant(account=account, amount=0)
    assert snapshot(account)["ledger"] == [] and balance(account) == 0


# --- insufficient credits ---------------------------------------------------------------------


def test_insufficient_credits_changes_nothing():
    account = new_account()
    credits_grant(account=account, amount=4, expires_at=days(3))
    credits_grant(account=account, amount=6)
    credits_charge(account=account, amount=3, generation_id="gen_ok")
    before = snapshot(account)

    with pytest.raises(InsufficientCredits) as excinfo:
        credits_charge(account=account, amount=8, generation_id="gen_short")
    assert "8 needed, 7 available" in str(excinfo.value)
    assert snapshot(account) == before
    assert not LedgerEntry.objects.filter(generation_id="gen_short").exists()
    # the generation id was not burnt: it can still be charged once there are credits
    credits_grant(account=account, amount=1)
    credits_charge(account=account, amount=8, generation_id="gen_short")
    assert balance(account) == 0
    assert_chain(account)


# --- refunds ----------------------------------------------------------------------------------


def test_full_refund_restores_exactly_the_grants_the_charge_drew_from():
    account = new_account()
    soon = credits_grant(account=account, amount=5, expires_at=days(2))
    later = credits_grant(account=account, amount=5, expires_at=days(10))
    forever = credits_grant(account=account, amount=10)
    untouched = credits_grant(account=account, amount=10)
    credits_charge(account=account, amount=12, generation_id="gen_full")
    assert remaining(soon, later, forever, untouched) == [0, 0, 8, 10]

    entry = credits_refund(account=account, generation_id="gen_full", amount=12)
    assert (entry.kind, entry.amount, entry.generation_id, entry.balance_after) == ("refund", 12, "gen_full", 30)
    assert remaining(soon, later, forever, untouched) == [5, 5, 10, 10]
    assert balance(account) == 30
    assert_chain(account)


def test_partial_refund_goes_to_the_latest_expiring_drawn_grants_first():
    account = new_account()
    soon = credits_grant(account=account, amount=5, expires_at=days(2))
    later = credits_grant(account=account, amount=5, expires_at=days(10))
    forever = credits_grant(account=account, amount=10)
    untouched = credits_grant(account=account, amount=10)  # never-expiring, but not drawn from
    credits_charge(account=account, amount=12, generation_id="gen_partial")  # soon 5, later 5, forever 2

    credits_refund(account=account, generation_id="gen_partial", amount=6)
    # never-expiring first (2 back), then the latest-expiring (4 of 5), nothing to the soonest
    assert remaining(soon, later, forever, untouched) == [0, 4, 10, 10]
    assert balance(account) == 24
    assert_chain(account)


def test_refund_into_a_grant_that_expired_meanwhile_is_expired_again():
    account = new_account()
    grant = credits_grant(account=account, amount=10, expires_at=days(1))
    credits_charge(account=account, amount=8, generation_id="gen_late_refund")
    with clock_at(days(2)):
        assert credits_expire_due(account=account) == 2
        before = balance(account)
        assert before == 0
        credits_refund(account=account, generation_id="gen_late_refund", amount=8)
    assert kinds(account)[-2:] == [("refund", 8), ("expire", -8)]
    assert balance(account) == before  # net unchanged
    refund_row, expire_row = LedgerEntry.objects.filter(account=account).order_by("-id")[:2][::-1]
    assert expire_row.grant_id == grant.pk
    assert refund_row.balance_after == 8 and expire_row.balance_after == 0
    assert remaining(grant) == [0]
    assert_chain(account)


def test_refund_into_an_unswept_expired_grant_expires_all_of_it():
    account = new_account()
    grant = credits_grant(account=account, amount=10, expires_at=days(1))
    keep = credits_grant(account=account, amount=3)
    credits_charge(account=account, amount=8, generation_id="gen_unswept")
    with clock_at(days(2)):
        credits_refund(account=account, generation_id="gen_unswept", amount=8)
    assert kinds(account)[-2:] == [("refund", 8), ("expire", -10)]
    assert remaining(grant, keep) == [0, 3]
    assert balance(account) == 3
    assert_chain(account)


def test_refund_of_a_charge_split_across_a_live_and_an_expired_grant():
    account = new_account()
    short = credits_grant(account=account, amount=4, expires_at=days(1))
    long = credits_grant(account=account, amount=4, expires_at=days(30))
    credits_charge(account=account, amount=6, generation_id="gen_split")  # short 4, long 2
    with clock_at(days(2)):
        credits_refund(account=account, generation_id="gen_split", amount=3)
    # latest-expiring first: 2 back to `long`, then 1 to `short`, which is past expiry → expired
    assert remaining(short, long) == [0, 4]
    assert kinds(account)[-2:] == [("refund", 3), ("expire", -1)]
    assert balance(account) == 4
    assert_chain(account)


def test_refunding_twice_moves_credits_once():
    account = new_account()
    credits_grant(account=account, amount=20)
    credits_charge(account=account, amount=8, generation_id="gen_twice")
    first = credits_refund(account=account, generation_id="gen_twice", amount=8)
    after_first = snapshot(account)

    again = credits_refund(account=account, generation_id="gen_twice", amount=8)
    assert again.pk == first.pk
    other = credits_refund(account=account, generation_id="gen_twice", amount=3)
    assert other.pk == first.pk
    assert snapshot(account) == after_first
    assert LedgerEntry.objects.filter(generation_id="gen_twice", kind=LedgerKind.REFUND).count() == 1
    assert balance(account) == 20


def test_partial_refund_then_a_second_refund_moves_nothing_more():
    account = new_account()
    credits_grant(account=account, amount=20)
    credits_charge(account=account, amount=16, generation_id="gen_part_twice")
    first = credits_refund(account=account, generation_id="gen_part_twice", amount=8)
    assert credits_refund(account=account, generation_id="gen_part_twice", amount=8).pk == first.pk
    assert balance(account) == 12


def test_refund_larger_than_the_charge_is_refused():
    account = new_account()
    credits_grant(account=account, amount=20)
    credits_charge(account=account, amount=8, generation_id="gen_big")
    before = snapshot(account)
    with pytest.raises((ValueError, HubError)):
        credits_refund(account=account, generation_id="gen_big", amount=9)
    assert snapshot(account) == before
    # …and it did not use up the generation's one refund
    credits_refund(account=account, generation_id="gen_big", amount=8)
    assert balance(account) == 20


def test_refund_of_nothing_moves_nothing():
    account = new_account()
    credits_grant(account=account, amount=20)
    credits_charge(account=account, amount=8, generation_id="gen_zero")
    before = snapshot(account)
    assert credits_refund(account=account, generation_id="gen_zero", amount=0) is None
    assert snapshot(account) == before


def test_refund_needs_a_charge_of_this_account():
    owner, stranger = new_account(), new_account()
    credits_grant(account=owner, amount=20)
    credits_grant(account=stranger, amount=20)
    credits_charge(account=owner, amount=8, generation_id="gen_owned")
    with pytest.raises(LedgerEntry.DoesNotExist):
        credits_refund(account=stranger, generation_id="gen_owned", amount=8)
    with pytest.raises(LedgerEntry.DoesNotExist):
        credits_refund(account=owner, generation_id="gen_never_charged", amount=8)
    assert (balance(owner), balance(stranger)) == (12, 20)


# --- the database's own guards ----------------------------------------------------------------


def _insert(account, **fields):
    with transaction.atomic():
        LedgerEntry.objects.create(account=account, **fields)


def test_database_refuses_a_second_charge_row_for_one_generation():
    account = new_account()
    credits_grant(account=account, amount=20)
    credits_charge(account=account, amount=8, generation_id="gen_dup")
    with pytest.raises(IntegrityError):
        _insert(account, kind=LedgerKind.CHARGE, amount=-1, balance_after=11, generation_id="gen_dup")
    assert LedgerEntry.objects.filter(generation_id="gen_dup", kind=LedgerKind.CHARGE).count() == 1


def test_database_refuses_a_second_refund_row_for_one_generation():
    account = new_account()
    credits_grant(account=account, amount=20)
    credits_charge(account=account, amount=8, generation_id="gen_dup_refund")
    credits_refund(account=account, generation_id="gen_dup_refund", amount=4)
    with pytest.raises(IntegrityError):
        _insert(account, kind=LedgerKind.REFUND, amount=1, balance_after=17, generation_id="gen_dup_refund")
    assert LedgerEntry.objects.filter(generation_id="gen_dup_refund", kind=LedgerKind.REFUND).count() == 1


def test_database_refuses_charge_or_refund_rows_without_a_generation():
    account = new_account()
    for kind in (LedgerKind.CHARGE, LedgerKind.REFUND):
        with pytest.raises(IntegrityError):
            _insert(account, kind=kind, amount=0, balance_after=0, generation_id="")


def test_database_refuses_a_negative_balance():
    account = new_account()
    credits_grant(account=account, amount=5)
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            CreditAccount.objects.filter(pk=account.pk).update(balance=-1)
    with pytest.raises(IntegrityError):
        _insert(account, kind=LedgerKind.ADJUST, amount=-6, balance_after=-1)
    assert balance(account) == 5


def test_database_refuses_a_grant_remaining_outside_zero_to_amount():
    account = new_account()
    grant = credits_grant(account=account, amount=5)
    for bad in (F("amount") + 1, -1):
        with pytest.raises(IntegrityError):
            with transaction.atomic():
                CreditGrant.objects.filter(pk=grant.pk).update(remaining=bad)
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            CreditGrant.objects.create(account=account, amount=3, remaining=4, source="admin")
    assert remaining(grant) == [5]


# --- claw-back --------------------------------------------------------------------------------


def test_clawback_draws_unspent_credits_soonest_expiring_first():
    account = new_account()
    operator = get_user_model().objects.create(username=f"operator-{next(_users)}")
    soon = credits_grant(account=account, amount=5, expires_at=days(2))
    forever = credits_grant(account=account, amount=10)
    credits_charge(account=account, amount=3, generation_id="gen_before_clawback")  # soon → 2

    entry = credits_clawback(account=account, amount=7, actor=operator, reason="chargeback #42")
    assert (entry.kind, entry.amount, entry.actor_id, entry.memo) == ("adjust", -7, operator.pk, "chargeback #42")
    assert remaining(soon, forever) == [0, 5]
    assert balance(account) == 5

    before = snapshot(account)
    with pytest.raises(InsufficientCredits):
        credits_clawback(account=account, amount=6, actor=operator, reason="more than is unspent")
    assert snapshot(account) == before
    assert_chain(account)


def test_clawback_requires_a_reason_and_a_positive_amount():
    account = new_account()
    credits_grant(account=account, amount=10)
    before = snapshot(account)
    for reason in ("", "   "):
        with pytest.raises(InvalidRequest):
            credits_clawback(account=account, amount=1, actor=None, reason=reason)
    for amount in (0, -3):
        with pytest.raises(InvalidRequest):
            credits_clawback(account=account, amount=amount, actor=None, reason="r")
    assert snapshot(account) == before


def test_clawback_cannot_take_expired_credits():
    account = new_account()
    credits_grant(account=account, amount=10)
    credits_grant(account=account, amount=40, expires_at=days(1))
    with clock_at(days(2)):
        with pytest.raises(InsufficientCredits):
            credits_clawback(account=account, amount=11, actor=None, reason="too much")
        credits_clawback(account=account, amount=10, actor=None, reason="all that is left")
    assert kinds(account)[-2:] == [("expire", -40), ("adjust", -10)]
    assert balance(account) == 0


# --- charge amount validation -----------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, -5])
def test_charge_of_a_non_positive_amount_is_refused_cleanly(amount):
    """Like credits_grant and credits_clawback, a charge must be a positive number of credits."""
    account = new_account()
    grant = credits_grant(account=account, amount=10)
    credits_charge(account=account, amount=7, generation_id="gen_before")  # grant → 3 left
    before = snapshot(account)
    with pytest.raises(InvalidRequest):
        credits_charge(account=account, amount=amount, generation_id="gen_non_positive")
    assert snapshot(account) == before
    assert remaining(grant) == [3]
    assert not LedgerEntry.objects.filter(generation_id="gen_non_positive").exists()


# --- drift ------------------------------------------------------------------------------------


def test_ledger_drift_is_empty_after_a_full_life_cycle():
    account = new_account()
    other = new_account()
    credits_grant(account=other, amount=9)
    credits_grant(account=account, amount=30, expires_at=days(1))
    credits_grant(account=account, amount=20)
    credits_charge(account=account, amount=16, generation_id="gen_cycle_1")
    credits_charge(account=account, amount=24, generation_id="gen_cycle_2")
    credits_refund(account=account, generation_id="gen_cycle_1", amount=8)
    credits_clawback(account=account, amount=2, actor=None, reason="goodwill reversed")
    with pytest.raises(InsufficientCredits):
        credits_charge(account=account, amount=100, generation_id="gen_cycle_3")
    with clock_at(days(2)):
        credits_expire_all_due()
        credits_refund(account=account, generation_id="gen_cycle_2", amount=24)
    assert ledger_drift() == []
    assert_chain(account)
    assert_chain(other)
    assert balance(account) == sum(remaining(*CreditGrant.objects.filter(account=account)))


def test_ledger_drift_reports_a_corrupted_balance(corrupts):
    account = new_account()
    grant = credits_grant(account=account, amount=10)
    assert ledger_drift() == []
    CreditAccount.objects.filter(pk=account.pk).update(balance=F("balance") + 5)
    problems = ledger_drift()
    assert any(f"account {account.pk}" in p and "ledger sum 10" in p for p in problems), problems
    assert any(f"account {account.pk}" in p and "unspent grants 10" in p for p in problems), problems

    CreditAccount.objects.filter(pk=account.pk).update(balance=10)
    CreditGrant.objects.filter(pk=grant.pk).update(remaining=4)
    problems = ledger_drift()
    assert problems == [f"account {account.pk}: balance 10 != unspent grants 4"]
