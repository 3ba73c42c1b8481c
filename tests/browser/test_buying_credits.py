"""Buying credits in a real browser: the Billing page's Buy button, Stripe's Checkout page (the
fake's), Stripe's webhook to the hub, and the balance the user comes back to."""

import re

import pytest
from playwright.sync_api import expect

from billing.models import CreditGrant, Purchase
from tests.billing.stripe_helpers import make_pack
from tests.browser.conftest import sign_in
from tests.factories import make_user
from tests.reconcile import assert_reconciled

PASSWORD = "correct horse battery"  # the factories' password


@pytest.mark.django_db(transaction=True)
def test_a_user_buys_a_pack_through_stripe_checkout_and_sees_the_credits(page, live_server, fake_stripe, screenshot):
    # What Stripe does once the customer pays: send the events to the endpoint registered in its dashboard.
    fake_stripe.webhook_url = f"{live_server.url}/stripe/webhook"
    make_user(email="buyer@example.com", credits=20)
    make_pack(name="Starter", credits=500, price_cents=900)
    make_pack(name="Studio", credits=6000, price_cents=7500, expires_days=365)

    sign_in(page, "buyer@example.com", PASSWORD)
    page.get_by_role("link", name="Buy credits").click()
    expect(page).to_have_url(re.compile(r"/account/billing/#buy$"))
    expect(page.get_by_test_id("pack")).to_have_count(2)
    screenshot(page, "billing-buy")

    page.get_by_role("button", name="Buy Starter").click()
    # The hub's answer redirects to Stripe's hosted page (form-action allows it).
    expect(page).to_have_url(re.compile(rf"^{re.escape(fake_stripe.base_url)}/pay/cs_test_\w+$"))
    expect(page.get_by_role("heading")).to_have_text("Pay 9.00 USD")
    purchase = Purchase.objects.get()
    assert purchase.status == "pending" and page.url.endswith(purchase.stripe_session_id)

    page.get_by_role("button", name="Pay").click()  # the fake then delivers checkout.session.completed
    expect(page).to_have_url(re.compile(r"/account/billing/\?checkout=success$"))
    expect(page.get_by_test_id("balance")).to_have_text("520")
    row = page.locator("#purchases tbody tr", has_text="Starter")
    expect(row.locator(".badge")).to_have_text("Paid")
    expect(row.get_by_role("link", name="Receipt")).to_have_attribute("href", re.compile(r"/receipts/ch_test_"))
    screenshot(page, "billing")
    [(event, status)] = fake_stripe.delivered
    assert (event["type"], status) == ("checkout.session.completed", 200)

    page.get_by_role("navigation").get_by_role("link", name="Credits").click()
    expect(page.get_by_test_id("credits-by-kind")).to_contain_text("500 paid")
    expect(page.get_by_test_id("credits-by-kind")).to_contain_text("20 promotional")
    screenshot(page, "credits-paid-and-promotional")
    assert CreditGrant.objects.get(purchase=purchase).kind == "paid"
    assert_reconciled()
