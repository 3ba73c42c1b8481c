"""Turning auto top-up on in a real browser: the Billing page's form, Stripe's setup page (the
fake's) where the card is saved, Stripe's webhook to the hub, and the page the user comes back to."""

import re

import pytest
from playwright.sync_api import expect

from billing.models import AutoTopUp
from tests.billing.stripe_helpers import make_pack
from tests.browser.conftest import sign_in
from tests.factories import make_user

PASSWORD = "correct horse battery"  # the factories' password


@pytest.mark.django_db(transaction=True)
def test_a_user_turns_auto_top_up_on_by_saving_a_card_with_stripe(page, live_server, fake_stripe, screenshot):
    fake_stripe.webhook_url = f"{live_server.url}/stripe/webhook"
    make_user(email="topper@example.com", credits=20)
    make_pack(name="Starter", credits=500, price_cents=900)
    make_pack(name="Studio", credits=6000, price_cents=7500)

    sign_in(page, "topper@example.com", PASSWORD)
    page.goto("/account/billing/#auto-top-up")
    section = page.locator("#auto-top-up")
    section.get_by_label("Pack to buy").select_option(label="Studio — 6000 credits, 75.00 USD")
    section.get_by_label("Threshold").fill("1000")
    section.get_by_role("button", name="Save a card and turn on").click()

    expect(page).to_have_url(re.compile(rf"^{re.escape(fake_stripe.base_url)}/pay/cs_test_\w+$"))
    expect(page.get_by_role("heading")).to_have_text("Save a card")
    page.get_by_role("button", name="Save card").click()  # the fake then delivers setup_intent.succeeded

    expect(page).to_have_url(re.compile(r"/account/billing/\?card=saved$"))
    expect(page.locator("#auto-top-up .notice")).to_have_text("Card saved with Stripe: auto top-up is on.")
    status = page.get_by_test_id("auto-top-up-status")
    expect(status).to_contain_text("When a charge takes your balance under 1000 credits")
    expect(status).to_contain_text("we buy Studio (6000 credits, 75.00 USD) with visa •••• 4242")
    page.locator("#auto-top-up").scroll_into_view_if_needed()
    screenshot(page, "billing-auto-top-up")
    topup = AutoTopUp.objects.get()
    assert topup.is_on and topup.account.auto_topup_threshold == 1000
