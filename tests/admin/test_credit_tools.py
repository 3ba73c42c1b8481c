from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from billing.models import CreditAccount, CreditGrant, LedgerEntry
from billing.selectors import ledger_drift
from billing.services import account_get_or_create, credits_grant, credits_grant_bulk
from hub.http.errors import InvalidRequest
from tests.bounds import REFUSED, assert_form_refused, refused_input
from tests.factories import bearer, make_key, make_user

pytestmark = pytest.mark.django_db
ACCOUNTS = "/admin/billing/creditaccount/"


def _expiry(days: int = 30):
    return (timezone.now() + timedelta(days=days)).replace(second=0, microsecond=0)


def test_granting_credits_with_an_expiry_records_who_and_why(console, operator, api):
    user = make_user()
    account = account_get_or_create(user=user)
    expires = _expiry()
    response = console.post(
        f"{ACCOUNTS}{account.pk}/grant/",
        {"amount": "250", "expires_at": f"{expires:%Y-%m-%dT%H:%M}", "reason": "Pilot customer", "apply": "1"},
    )
    assert response.status_code == 302 and response["Location"] == f"{ACCOUNTS}{account.pk}/change/"
    grant = CreditGrant.objects.get(account=account)
    assert (grant.amount, grant.expires_at, grant.reason, grant.granted_by) == (
        250,
        expires,
        "Pilot customer",
        operator,
    )
    entry = LedgerEntry.objects.get(account=account)
    assert (entry.kind, entry.amount, entry.actor, entry.memo) == ("grant", 250, operator, "Pilot customer")
    assert "Pilot customer" in LogEntry.objects.get(object_id=str(account.pk)).get_change_message()
    body = api.get("/api/v1/credits", **bearer(make_key(user))).json()
    assert body["credits"] == 250 and body["next_expiration"]["credits"] == 250


@pytest.mark.parametrize(
    "data, error",
    [
        ({"amount": "10", "reason": ""}, b"This field is required"),
        ({"amount": "0", "reason": "x"}, b"greater than or equal to 1"),
        ({"amount": "10", "reason": "x", "expires_at": "2001-01-01T00:00"}, b"must be in the future"),
    ],
)
def test_a_grant_needs_a_positive_amount_a_reason_and_a_future_expiry(console, data, error):
    account = account_get_or_create(user=make_user())
    response = console.post(f"{ACCOUNTS}{account.pk}/grant/", {**data, "apply": "1"})
    assert response.status_code == 200 and error in response.content
    assert not CreditGrant.objects.filter(account=account).exists()


def test_the_bulk_action_grants_to_every_selected_account(console, operator):
    accounts = [account_get_or_create(user=make_user()) for _ in range(3)]
    selected = [str(a.pk) for a in accounts[:2]]
    form = console.post(ACCOUNTS, {"action": "grant_credits", "_selected_action": selected})
    assert form.status_code == 200 and b"Grant credits to 2 accounts" in form.content
    response = console.post(
        ACCOUNTS,
        {
            "action": "grant_credits",
            "_selected_action": selected,
            "amount": "40",
            "reason": "Beta cohort",
            "apply": "1",
        },
    )
    assert response.status_code == 302
    assert [a.balance for a in CreditAccount.objects.filter(pk__in=[a.pk for a in accounts]).order_by("pk")] == [
        40,
        40,
        0,
    ]
    assert set(CreditGrant.objects.values_list("granted_by", "reason")) == {(operator.pk, "Beta cohort")}
    assert ledger_drift() == []


def test_bulk_grant_service_needs_a_reason_and_grants_once_per_account(operator):
    account = account_get_or_create(user=make_user())
    with pytest.raises(InvalidRequest):
        credits_grant_bulk(accounts=[account], amount=5, reason=" ", actor=operator)
    grants = credits_grant_bulk(accounts=[account, account], amount=5, reason="dup", actor=operator)
    assert len(grants) == 1 and CreditAccount.objects.get(pk=account.pk).balance == 5


def test_claw_back_removes_unspent_credits_with_who_and_why(console, operator):
    user = make_user(credits=100)
    account = account_get_or_create(user=user)
    response = console.post(
        f"{ACCOUNTS}{account.pk}/clawback/", {"amount": "30", "reason": "Refunded by card", "apply": "1"}
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.balance == 70
    entry = LedgerEntry.objects.get(account=account, kind="adjust")
    assert (entry.amount, entry.actor, entry.memo) == (-30, operator, "Refunded by card")


def test_claw_back_of_more_than_the_unspent_credits_changes_nothing(console):
    account = account_get_or_create(user=make_user(credits=10))
    response = console.post(f"{ACCOUNTS}{account.pk}/clawback/", {"amount": "11", "reason": "too much", "apply": "1"})
    assert response.status_code == 200 and b"Only 10 unspent credits" in response.content
    account.refresh_from_db()
    assert account.balance == 10


@pytest.mark.parametrize("kind", REFUSED)
@pytest.mark.parametrize("tool", ["grant", "clawback"])
def test_an_amount_its_column_cannot_hold_is_a_form_error_and_moves_nothing(console, tool, kind):
    account = account_get_or_create(user=make_user(credits=10))
    column = (CreditGrant, "amount") if tool == "grant" else (CreditAccount, "balance")
    data = {"amount": refused_input(kind, *column), "reason": "typo", "apply": "1"}
    assert_form_refused(console.post(f"{ACCOUNTS}{account.pk}/{tool}/", data), "amount")
    account.refresh_from_db()
    assert (account.balance, LedgerEntry.objects.filter(account=account).count()) == (10, 1)


def test_changing_the_account_type_keeps_a_concurrently_changed_balance(console):
    account = account_get_or_create(user=make_user())
    page = console.get(f"{ACCOUNTS}{account.pk}/change/")
    assert b"Grant credits" in page.content and b"Claw back credits" in page.content
    credits_grant(account=account, amount=9)  # lands between loading the form and saving it
    response = console.post(f"{ACCOUNTS}{account.pk}/change/", {"account_type": "ENTERPRISE"})
    assert response.status_code == 302
    account.refresh_from_db()
    assert (account.account_type, account.balance) == ("ENTERPRISE", 9)


@pytest.mark.parametrize("model", ["ledgerentry", "creditgrant"])
def test_ledger_and_grant_rows_cannot_be_added_edited_or_deleted(console, model):
    credits_grant(account=account_get_or_create(user=make_user()), amount=5)
    row = (LedgerEntry if model == "ledgerentry" else CreditGrant).objects.get()
    base = f"/admin/billing/{model}/"
    listing = console.get(base)
    assert listing.status_code == 200 and b"delete_selected" not in listing.content
    assert console.get(f"{base}add/").status_code == 403
    assert console.get(f"{base}{row.pk}/delete/").status_code == 403
    assert console.post(f"{base}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert console.post(f"{base}{row.pk}/change/", {"amount": "999"}).status_code == 403
    view = console.get(f"{base}{row.pk}/change/")
    assert view.status_code == 200 and b'type="submit"' not in view.content.split(b'id="content-main"')[1]
    assert (LedgerEntry if model == "ledgerentry" else CreditGrant).objects.get().amount == 5


def test_the_ledger_filters_by_kind_and_account(console):
    a, b = make_user(credits=5), make_user(credits=7)
    account = account_get_or_create(user=a)
    content = console.get(f"/admin/billing/ledgerentry/?kind__exact=grant&account__id__exact={account.pk}").content
    assert a.email.encode() in content and b.email.encode() not in content


def test_staff_without_credit_permissions_cannot_grant(client):
    user = make_user()
    user.is_staff = True
    user.save()
    client.force_login(user)
    account = account_get_or_create(user=make_user())
    response = client.post(f"{ACCOUNTS}{account.pk}/grant/", {"amount": "10", "reason": "x", "apply": "1"})
    assert response.status_code == 403
    assert not CreditGrant.objects.filter(account=account).exists()


def test_people_who_are_not_staff_are_sent_to_the_admin_sign_in(client):
    client.force_login(make_user())
    response = client.get(ACCOUNTS)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
