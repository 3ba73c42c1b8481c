"""Operators' side of selling credits: packs (admin and `hub_pack`), purchases with their refunds
and shortfalls, failed payments, revenue per day, and the Stripe events applied."""

import io

import pytest
from django.contrib.admin.utils import quote
from django.core.management import CommandError, call_command

from billing.models import CreditPack, Purchase
from billing.services import account_get_or_create, credits_clawback
from tests.billing.stripe_helpers import checkout, deliver_all, make_pack
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_an_operator_adds_a_pack_in_the_admin_and_deactivates_it_rather_than_deleting(console):
    form = {"name": "Team", "credits": 5000, "price_cents": 4000, "currency": "EUR", "expires_days": 365}
    response = console.post("/admin/billing/creditpack/add/", {**form, "active": "on"})
    assert response.status_code == 302, response.content
    pack = CreditPack.objects.get()
    assert (pack.name, pack.credits, pack.price_cents, pack.currency, pack.expires_days, pack.active) == (
        "Team",
        5000,
        4000,
        "eur",
        365,
        True,
    )
    assert pack.id.startswith("pack_")
    refused = console.post("/admin/billing/creditpack/add/", {**form, "currency": "€1", "credits": 0})
    assert refused.status_code == 200 and CreditPack.objects.count() == 1
    assert b"A three-letter ISO currency code in lower case" in refused.content
    assert b"Ensure this value is greater than or equal to 1" in refused.content
    listing = console.get("/admin/billing/creditpack/").content.decode()
    assert "40.00 EUR" in listing
    assert console.get(f"/admin/billing/creditpack/{quote(pack.pk)}/delete/").status_code == 403


def test_hub_pack_adds_and_lists_packs():
    out = io.StringIO()
    call_command(
        "hub_pack", "add", "Starter", "--credits", "500", "--price-cents", "900", "--currency", "USD", stdout=out
    )
    lines = out.getvalue().splitlines()
    pack = CreditPack.objects.get()
    assert lines == ["Added Starter: 500 credits for 9.00 USD", pack.id]
    assert (pack.currency, pack.expires_days, pack.active) == ("usd", None, True)
    call_command("hub_pack", "add", "Year", "--credits", "9000", "--price-cents", "8000", "--expires-days", "365")
    out = io.StringIO()
    call_command("hub_pack", "list", stdout=out)
    assert out.getvalue().splitlines() == [
        f"{pack.id}  Starter: 500 credits for 9.00 USD",
        f"{CreditPack.objects.get(name='Year').id}  Year: 9000 credits for 80.00 USD, expire after 365 days",
    ]
    for bad in (
        ["--credits", "0", "--price-cents", "900"],
        ["--credits", "5", "--price-cents", "9", "--currency", "$"],
    ):
        with pytest.raises(CommandError):
            call_command("hub_pack", "add", "Bad", *bad)
    assert CreditPack.objects.count() == 2


def test_purchases_show_refunds_shortfalls_failures_and_the_revenue_per_day(console, api, fake_stripe):
    user = make_user(email="payer@example.com")
    pack = make_pack(credits=500, price_cents=900)
    paid = checkout(api, user, pack)
    deliver_all(fake_stripe, fake_stripe.pay(paid.stripe_session_id))
    paid.refresh_from_db()
    credits_clawback(account=account_get_or_create(user=user), amount=200, actor=None, reason="spent")
    deliver_all(fake_stripe, fake_stripe.refund(paid.stripe_payment_intent_id))
    failed = checkout(api, user, pack)
    deliver_all(fake_stripe, fake_stripe.pay(failed.stripe_session_id, async_payment=True))
    deliver_all(fake_stripe, fake_stripe.settle(failed.stripe_session_id, succeeded=False))
    second = checkout(api, user, pack)
    deliver_all(fake_stripe, fake_stripe.pay(second.stripe_session_id))

    listing = console.get("/admin/billing/purchase/").content.decode()
    assert "Revenue per day" in listing and "?status__exact=failed" in listing
    assert "payer@example.com" in listing and "Refunded" in listing and "9.00 USD" in listing
    shortfall = console.get("/admin/billing/purchase/?shortfall=yes").content.decode()
    assert paid.id in shortfall and second.id not in shortfall and failed.id not in shortfall
    assert Purchase.objects.get(pk=paid.pk).credits_shortfall == 200
    failures = console.get("/admin/billing/purchase/?status__exact=failed").content.decode()
    assert failed.id in failures and paid.id not in failures and second.id not in failures

    revenue = console.get("/admin/billing/purchase/revenue/").content.decode()
    row = revenue.split('id="revenue"')[1].split("</table>")[0]
    # Two paid purchases today: 18.00 gross, 9.00 refunded, 9.00 net.
    assert "<td>2</td>" in row and "<td>18.00 USD</td><td>9.00 USD</td><td>9.00 USD</td>" in row

    assert console.get(f"/admin/billing/purchase/{quote(paid.pk)}/change/").status_code == 200
    assert console.get("/admin/billing/purchase/add/").status_code == 403
    events = console.get("/admin/billing/processedstripeevent/").content.decode()
    assert "charge.refunded" in events and "checkout.session.async_payment_failed" in events


def test_the_revenue_page_is_for_operators_only(client):
    user = make_user()
    client.force_login(user)
    response = client.get("/admin/billing/purchase/revenue/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
