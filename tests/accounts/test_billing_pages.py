"""The Billing page (packs to buy, purchases with receipts and refunds, credits granted, expired and
taken back) and the paid/promotional split on the Credits page."""

import pytest
from django.test import Client

from billing.models import Purchase
from billing.services import account_get_or_create, credits_grant
from tests.billing.stripe_helpers import deliver_all, make_pack
from tests.reconcile import assert_reconciled

pytestmark = pytest.mark.django_db


def _form_targets(response) -> list[str]:
    directives = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    return directives["form-action"].split()


def test_without_stripe_settings_there_is_nothing_to_buy_and_the_rest_works(member, settings):
    settings.STRIPE_SECRET_KEY = settings.STRIPE_WEBHOOK_SECRET = ""
    user, client = member
    pack = make_pack()
    credits_grant(account=account_get_or_create(user=user), amount=40, reason="Welcome")
    for path in ("/account/", "/account/credits/", "/account/billing/"):
        response = client.get(path)
        assert response.status_code == 200 and b"Buy credits" not in response.content, path
        assert _form_targets(response) == ["'self'"]
    page = client.get("/account/billing/").content.decode()
    assert "Welcome" in page and "No purchases yet." in page
    assert client.post(f"/account/billing/packs/{pack.id}/buy/").status_code == 404
    assert not Purchase.objects.exists()


def test_buying_a_pack_redirects_to_stripe_s_checkout_page(member, fake_stripe):
    user, client = member
    pack = make_pack(name="Pro pack", credits=2000, price_cents=1999, expires_days=90)
    make_pack(name="Yen pack", credits=100, price_cents=500, currency="jpy")
    page = client.get("/account/billing/")
    content = page.content.decode()
    assert 'id="buy"' in content and "Pro pack" in content
    assert "2000 credits" in content and "19.99 USD" in content and "500 JPY" in content
    assert "Valid 90 days after purchase" in content and "Never expire" in content
    # Browsers hold the Buy form's redirect to form-action too: Stripe's Checkout is allowed.
    assert _form_targets(page) == ["'self'", "https://checkout.stripe.com", fake_stripe.base_url]
    assert b"Buy credits" in client.get("/account/").content

    response = client.post(f"/account/billing/packs/{pack.id}/buy/")
    purchase = Purchase.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{fake_stripe.base_url}/pay/{purchase.stripe_session_id}"
    assert (purchase.account.user, purchase.status, purchase.credits) == (user, "pending", 2000)


def test_buying_takes_a_post_from_a_signed_in_user_with_the_csrf_token(member, fake_stripe):
    user, client = member
    pack = make_pack()
    url = f"/account/billing/packs/{pack.id}/buy/"
    assert client.get(url).status_code == 405
    anonymous = Client().post(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/account/login/")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(url).status_code == 403
    assert client.post("/account/billing/packs/pack_nope/buy/").status_code == 404
    assert not Purchase.objects.exists()


def test_stripe_unreachable_on_buy_says_so_on_the_billing_page(member, fake_stripe):
    _, client = member
    pack = make_pack()
    fake_stripe.fail_next(500)
    response = client.post(f"/account/billing/packs/{pack.id}/buy/", follow=True)
    assert response.redirect_chain == [("/account/billing/", 302)]
    assert "The payment provider is unavailable; nothing was charged" in response.content.decode()
    assert Purchase.objects.get().status == "failed"


def test_the_billing_page_lists_purchases_with_receipts_refunds_and_the_credits_history(member, fake_stripe):
    user, client = member
    pack = make_pack(name="Starter", credits=500, price_cents=900)
    client.post(f"/account/billing/packs/{pack.id}/buy/")
    purchase = Purchase.objects.get()
    deliver_all(fake_stripe, fake_stripe.pay(purchase.stripe_session_id))
    purchase.refresh_from_db()
    deliver_all(fake_stripe, fake_stripe.refund(purchase.stripe_payment_intent_id, amount=450))
    purchase.refresh_from_db()

    content = client.get("/account/billing/?checkout=success").content.decode()
    assert "Thank you. Your credits are added as soon as Stripe confirms the" in content
    purchases = content.split('id="purchases"')[1].split("</table>")[0]
    assert "Starter" in purchases and "9.00 USD" in purchases
    assert 'badge-partly-refunded">Partly refunded' in purchases
    assert "4.50 USD" in purchases and "250 credits taken back" in purchases
    assert f'href="{purchase.receipt_url}"' in purchases
    history = content.split('id="billing-history"')[1].split("</table>")[0]
    assert 'badge-reversal">Reversal' in history and "-250" in history
    assert 'badge-grant">Grant</span> <span class="badge badge-paid">Paid' in history
    assert f"Payment refund of purchase {purchase.id}" in history
    assert "Checkout canceled" in client.get("/account/billing/?checkout=canceled").content.decode()
    assert_reconciled()


def test_the_credits_page_tells_paid_credits_from_promotional_ones(member, fake_stripe):
    user, client = member
    credits_grant(account=account_get_or_create(user=user), amount=50, reason="Launch bonus")
    client.post(f"/account/billing/packs/{make_pack(credits=500).id}/buy/")
    deliver_all(fake_stripe, fake_stripe.pay(Purchase.objects.get().stripe_session_id))

    content = client.get("/account/credits/").content.decode()
    assert 'data-testid="balance">550<' in content
    assert "<strong>500</strong> paid" in content and "<strong>50</strong> promotional" in content
    grants = content.split('id="grants"')[1].split("</table>")[0]
    assert grants.count('badge-paid">Paid') == 1 and grants.count('badge-promotional">Promotional') == 1
    ledger = content.split('id="ledger"')[1].split("</table>")[0]
    assert 'badge-paid">Paid' in ledger and 'badge-promotional">Promotional' in ledger
    assert "Buy credits" in content
