"""Operator commands: hub_createuser, hub_createkey (last stdout line is the raw key), hub_revokekey, hub_reconcile."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apikeys.models import ApiKey
from billing.models import CreditAccount, CreditGrant
from tests.bounds import REFUSED, refused_input
from tests.factories import bearer, make_key, make_user

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


@pytest.mark.parametrize("kind", REFUSED)
def test_createuser_refuses_credits_a_grant_cannot_hold_in_one_line(kind):
    make_user(email="bob@example.com")
    with pytest.raises(CommandError, match=r"^Error: argument --credits: .* is not a whole number from 0 to \d+$"):
        _run("hub_createuser", "bob@example.com", "--credits", refused_input(kind, CreditGrant, "amount"))
    assert CreditAccount.objects.get(user__email="bob@example.com").balance == 0


@pytest.mark.parametrize("text", ["abc", "0", "-1", "36501", str(2**63), str(10**30)])
def test_createkey_refuses_an_expiry_that_is_no_reasonable_number_of_days_in_one_line(text):
    make_user(email="bob@example.com")
    with pytest.raises(CommandError, match=r"^Error: argument --expires-in-days: .* from 1 to 36500$"):
        _run("hub_createkey", "bob@example.com", "--expires-in-days", text)
    assert not ApiKey.objects.exists()


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


def test_revokekey_revokes_the_key_its_display_prefix_names(api):
    alice, bob = make_user(email="alice@example.com"), make_user(email="bob@example.com")
    doomed, kept = make_key(alice, name="ci"), make_key(bob)
    key = ApiKey.objects.get(owner=alice)
    out = _run("hub_revokekey", key.display_prefix)
    assert f"Revoked {key.display_prefix}… (ci) of alice@example.com" in out
    assert api.get("/api/v1/credits", **bearer(doomed)).json()["error"]["code"] == "invalidApiKey"
    assert api.get("/api/v1/credits", **bearer(kept)).status_code == 200


@pytest.mark.parametrize("how", ["whole key", "longer leading part", "id"])
def test_revokekey_also_takes_the_whole_key_a_longer_part_or_the_id(how):
    raw = make_key(make_user())
    key = ApiKey.objects.get()
    _run("hub_revokekey", {"whole key": raw, "longer leading part": raw[:20], "id": key.pk}[how])
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_revokekey_refuses_a_prefix_that_names_several_keys():
    user = make_user(email="alice@example.com")
    make_key(user, name="one")
    make_key(user, name="two")
    ApiKey.objects.update(display_prefix="gih_live_AbC4")
    with pytest.raises(CommandError, match="matches 2 active keys") as refused:
        _run("hub_revokekey", "gih_live_AbC4")
    assert all(key.pk in str(refused.value) for key in ApiKey.objects.all())
    with pytest.raises(CommandError, match="matches 2 active keys"):
        _run("hub_revokekey", "gih_live_Ab")
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()


@pytest.mark.parametrize("text", ["gih_live_", "gih_live_zzzz", "AbC4", "key_unknown"])
def test_revokekey_refuses_what_names_no_active_key(text):
    make_key(make_user())
    ApiKey.objects.update(display_prefix="gih_live_AbC4")
    with pytest.raises(CommandError, match="No active API key matches"):
        _run("hub_revokekey", text)
    assert ApiKey.objects.get().revoked_at is None


def test_revokekey_does_not_count_revoked_keys():
    user = make_user()
    make_key(user, name="old")
    make_key(user, name="new")
    ApiKey.objects.update(display_prefix="gih_live_AbC4")
    old = ApiKey.objects.get(name="old")
    _run("hub_revokekey", old.pk)
    _run("hub_revokekey", "gih_live_AbC4")
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 0
