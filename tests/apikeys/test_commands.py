"""Operator commands: hub_createuser, hub_createkey (last stdout line is the raw key), hub_reconcile."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apikeys.models import ApiKey
from billing.models import CreditAccount
from tests.factories import bearer

pytestmark = pytest.mark.django_db


def _run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_createuser_then_createkey_gives_a_working_key(api):
    _run(
        "hub_createuser",
        "Alice@Example.com",
        "--credits",
        "250",
        "--account-type",
        "PRO",
        "--password",
        "s3cret-pass-1",
    )
    account = CreditAccount.objects.get(user__email="alice@example.com")
    assert (account.balance, account.account_type) == (250, "PRO")

    raw = _run("hub_createkey", "alice@example.com", "--name", "ci", "--expires-in-days", "30").splitlines()[-1]
    assert raw.startswith("gih_live_") and len(raw) == 41
    key = ApiKey.objects.get(owner__email="alice@example.com")
    assert (key.name, key.expires_at is not None) == ("ci", True)
    assert api.get("/api/v1/credits", **bearer(raw)).json() == {
        "credits": 250,
        "account_type": "PRO",
        "next_expiration": None,
    }


def test_createuser_again_tops_up_instead_of_duplicating():
    _run("hub_createuser", "bob@example.com", "--credits", "10")
    _run("hub_createuser", "bob@example.com", "--credits", "5")
    assert CreditAccount.objects.get(user__email="bob@example.com").balance == 15


def test_createkey_for_unknown_user_fails():
    with pytest.raises(CommandError, match="No user"):
        _run("hub_createkey", "nobody@example.com")


def test_reconcile_passes_on_a_consistent_ledger_and_fails_on_drift():
    _run("hub_createuser", "carol@example.com", "--credits", "40")
    assert "OK" in _run("hub_reconcile")
    CreditAccount.objects.filter(user__email="carol@example.com").update(balance=41)
    with pytest.raises(CommandError, match="problem"):
        _run("hub_reconcile")


def test_demo_prints_a_fresh_working_key_each_time(api):
    first = _run("hub_demo").splitlines()[-1].split()[-1]
    second = _run("hub_demo").splitlines()[-1].split()[-1]
    assert first != second
    for raw in (first, second):
        assert api.get("/api/v1/credits", **bearer(raw)).json()["credits"] == 1000
