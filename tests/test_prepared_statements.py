"""On PostgreSQL each pooled connection prepares the statements it runs often (hub.settings,
DATABASE_PREPARED_STATEMENTS): the hot path's key lookup and charge are planned once per
connection. What it must not change is what the statements do."""

import pytest
from django.conf import settings
from django.db import connection

from billing.services import account_get_or_create, credits_charge, credits_grant
from tests.factories import make_user

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's"),
]


def _prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


def test_a_charge_run_often_is_prepared_and_still_charges():
    account = account_get_or_create(user=make_user())
    credits_grant(account=account, amount=100)
    runs = settings.PREPARE_THRESHOLD + 2
    for i in range(runs):
        credits_charge(account=account, amount=3, generation_id=f"gen_prepared_{i}")
    prepared = _prepared()
    assert any("FOR UPDATE" in statement and "billing_creditaccount" in statement for statement in prepared)
    assert any("billing_creditgrant" in statement and "FOR UPDATE" in statement for statement in prepared)
    account.refresh_from_db()
    assert account.balance == 100 - 3 * runs
    assert account.ledger.filter(kind="charge").count() == runs
