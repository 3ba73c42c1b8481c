"""A charge writes the same rows whether PostgreSQL takes it in one statement or the ORM writes
it row by row (the embedded default's path): grants drawn in spending order, the balance, the
ledger row, its allocations — and a refund finds them the same way."""

from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.utils import timezone

from billing.models import ChargeAllocation, CreditGrant, LedgerEntry
from billing.selectors import ledger_drift
from billing.services import account_get_or_create, charges, credits_charge, credits_grant, credits_refund
from hub.http.errors import InsufficientCredits
from hub.infra import backends
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def _charged_account(one_statement: bool, monkeypatch):
    if not one_statement:
        monkeypatch.setattr(charges, "ONE_STATEMENT_CHARGE", False)
    account = account_get_or_create(user=make_user())
    soon = timezone.now() + timedelta(days=1)
    for amount, expires_at in ((5, soon), (10, None), (7, soon + timedelta(days=1))):
        credits_grant(account=account, amount=amount, expires_at=expires_at)
    entry = credits_charge(account=account, amount=14, generation_id=f"gen_path_{one_statement}", memo="2 × m")
    credits_refund(account=account, generation_id=f"gen_path_{one_statement}", amount=3, memo="refund")
    with pytest.raises(InsufficientCredits):
        credits_charge(account=account, amount=12, generation_id=f"gen_short_{one_statement}")
    return account, entry


def _rows(account) -> dict:
    grants = list(CreditGrant.objects.filter(account=account).order_by("pk"))
    index = {grant.pk: i for i, grant in enumerate(grants)}
    ledger = LedgerEntry.objects.filter(account=account).order_by("pk")
    return {
        "balance": type(account).objects.get(pk=account.pk).balance,
        "grants": [grant.remaining for grant in grants],
        "ledger": [(e.kind, e.amount, e.balance_after, e.generation_id[:8], e.memo) for e in ledger],
        "allocations": sorted(
            (index[a.grant_id], a.amount) for a in ChargeAllocation.objects.filter(entry__account=account)
        ),
    }


@pytest.mark.skipif(not backends.dml_in_cte(), reason="the one-statement charge is PostgreSQL's")
def test_one_statement_and_orm_charges_write_the_same_rows(monkeypatch):
    one, entry = _charged_account(True, monkeypatch)
    assert LedgerEntry.objects.get(pk=entry.pk).balance_after == entry.balance_after == 8
    monkeypatch.undo()
    orm, _ = _charged_account(False, monkeypatch)
    assert _rows(one) == _rows(orm)
    # 14 drawn soonest-expiring first (5, then 7, then 2 of the never-expiring 10); 3 refunded to
    # the latest-expiring first (2 to the never-expiring one, 1 to the day-after-tomorrow one).
    assert _rows(one)["grants"] == [0, 10, 1] and _rows(one)["balance"] == 11
    assert _rows(one)["allocations"] == [(0, 5), (1, 2), (2, 7)]
    assert ledger_drift() == []


def test_a_second_charge_of_one_generation_is_refused_by_the_database():
    account = account_get_or_create(user=make_user())
    credits_grant(account=account, amount=10)
    credits_charge(account=account, amount=2, generation_id="gen_twice")
    with pytest.raises(IntegrityError):
        credits_charge(account=account, amount=2, generation_id="gen_twice")


def test_the_one_query_summary_of_a_sync_answer_equals_the_credits_endpoints():
    from billing.selectors import credits_summary, credits_summary_for_user

    user = make_user()
    account = account_get_or_create(user=user)
    soon = timezone.now() + timedelta(days=2)
    for amount, expires_at in ((4, soon), (6, soon), (10, None), (3, soon + timedelta(days=1))):
        credits_grant(account=account, amount=amount, expires_at=expires_at)
    summary = credits_summary_for_user(user_id=user.pk)
    assert summary == credits_summary(account=account_get_or_create(user=user))
    assert (summary.credits, summary.next_expiration.credits, summary.next_expiration.expires_at) == (23, 10, soon)


def test_the_summary_read_with_another_row_equals_the_credits_endpoints():
    """The sync answer reads its balance with the finished generation (credits_summary_annotations)."""
    from django.contrib.auth import get_user_model
    from django.db.models import OuterRef

    from billing.selectors import credits_summary, credits_summary_annotations, credits_summary_of

    users = get_user_model().objects
    user = make_user()
    account = account_get_or_create(user=user)
    soon = timezone.now() + timedelta(days=2)
    for amount, expires_at in ((4, soon), (6, soon), (10, None), (3, soon + timedelta(days=1))):
        credits_grant(account=account, amount=amount, expires_at=expires_at)
    credits_charge(account=account, amount=5, generation_id="gen_summary")
    annotated = users.annotate(**credits_summary_annotations(OuterRef("pk")))
    summary = credits_summary_of(annotated.get(pk=user.pk))
    assert summary == credits_summary(account=account_get_or_create(user=user))
    assert (summary.credits, summary.account_type, summary.next_expiration.credits) == (18, "FREE", 5)
    assert credits_summary_of(users.get(pk=user.pk)) is None  # read without the annotations
