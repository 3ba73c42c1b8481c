"""Buying credits through Stripe: the checkout, and the webhook events that pay, fail, refund or
dispute a purchase — each applied exactly once, in any order, and only when Stripe signed it.

Stripe is the fake of tests/fakes/stripe_server.py, reached by the official library through
STRIPE_API_BASE; the events are delivered to the hub's real endpoint, signed as Stripe signs them.
"""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import (
    CreditAccount,
    CreditGrant,
    GrantKind,
    LedgerEntry,
    LedgerKind,
    ProcessedStripeEvent,
    Purchase,
    PurchaseStatus,
)
from billing.services import account_get_or_create, credits_clawback
from tests.billing.stripe_helpers import checkout, deliver, deliver_all, make_pack
from tests.factories import bearer, make_key, make_user
from tests.reconcile import assert_reconciled

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _reconciled_afterwards(request):
    yield
    assert_reconciled()


def balance(user) -> int:
    return CreditAccount.objects.get(user=user).balance


def test_without_stripe_settings_packs_checkout_and_webhook_answer_404(api, settings):
    settings.STRIPE_SECRET_KEY = settings.STRIPE_WEBHOOK_SECRET = ""
    pack = make_pack()
    auth = bearer(make_key(make_user()))
    for response in (
        api.get("/api/v1/credit-packs", **auth),
        api.post(f"/api/v1/credit-packs/{pack.id}/checkout", **auth),
        api.post("/stripe/webhook", data="{}", content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=0"),
    ):
        assert response.status_code == 404 and response.json()["error"]["code"] == "notFound"
    assert not Purchase.objects.exists()


def test_the_packs_for_sale_are_listed_in_openai_s_list_shape(api, fake_stripe):
    small = make_pack(name="Small", credits=100, price_cents=200)
    large = make_pack(name="Large", credits=1000, price_cents=1500, expires_days=365)
    make_pack(name="Retired").__class__.objects.filter(name="Retired").update(active=False)
    response = api.get("/api/v1/credit-packs", **bearer(make_key(make_user())))
    assert response.status_code == 200
    assert response.json() == {
        "object": "list",
        "data": [
            {
                "id": small.id,
                "object": "credit_pack",
                "name": "Small",
                "credits": 100,
                "price_cents": 200,
                "currency": "usd",
                "expires_days": None,
            },
            {
                "id": large.id,
                "object": "credit_pack",
                "name": "Large",
                "credits": 1000,
                "price_cents": 1500,
                "currency": "usd",
                "expires_days": 365,
            },
        ],
    }
    assert small.id.startswith("pack_")
    assert api.get("/api/v1/credit-packs").status_code == 401


def test_checkout_opens_a_stripe_session_for_the_pack_s_price_and_grants_nothing_yet(api, fake_stripe):
    user = make_user(email="buyer@example.com")
    pack = make_pack(credits=500, price_cents=900, currency="eur")
    response = api.post(f"/api/v1/credit-packs/{pack.id}/checkout", **bearer(make_key(user)))
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"session_id", "checkout_url"}
    assert body["session_id"].startswith("cs_test_")
    assert body["checkout_url"] == f"{fake_stripe.base_url}/pay/{body['session_id']}"

    purchase = Purchase.objects.get()
    assert (purchase.status, purchase.stripe_session_id, purchase.account.user) == ("pending", body["session_id"], user)
    assert (purchase.credits, purchase.amount_cents, purchase.currency) == (500, 900, "eur")
    (sent,) = fake_stripe.requests
    assert (sent.method, sent.path) == ("POST", "/v1/checkout/sessions")
    assert sent.headers["idempotency-key"] == f"checkout-{purchase.id}"
    assert sent.headers["stripe-version"]  # the library pins its API version
    assert sent.params["mode"] == "payment"
    assert sent.params["line_items"] == [
        {
            "quantity": "1",
            "price_data": {"currency": "eur", "unit_amount": "900", "product_data": {"name": "Starter — 500 credits"}},
        }
    ]
    assert sent.params["metadata"] == {"purchase_id": purchase.id}
    assert sent.params["payment_intent_data"] == {"metadata": {"purchase_id": purchase.id}}
    assert sent.params["customer_email"] == "buyer@example.com"
    assert sent.params["success_url"] == "http://testserver/account/billing/?checkout=success"
    assert sent.params["cancel_url"] == "http://testserver/account/billing/?checkout=canceled"
    assert balance(user) == 0


def test_paying_grants_the_pack_once_as_a_paid_grant_with_its_expiry_and_receipt(api, fake_stripe):
    user = make_user()
    purchase = checkout(api, user, make_pack(credits=500, expires_days=30))
    (event,) = fake_stripe.pay(purchase.stripe_session_id)
    response = deliver(fake_stripe, event)
    assert response.status_code == 200 and response.json() == {"received": True, "applied": True}

    assert balance(user) == 500
    grant = CreditGrant.objects.get(account__user=user)
    assert (grant.kind, grant.source, grant.amount, grant.purchase_id) == (GrantKind.PAID, "purchase", 500, purchase.id)
    assert abs(grant.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    (entry,) = LedgerEntry.objects.filter(account__user=user)
    assert (entry.kind, entry.amount, entry.grant_id) == (LedgerKind.GRANT, 500, grant.pk)
    purchase.refresh_from_db()
    intent = fake_stripe.sessions[purchase.stripe_session_id]["payment_intent"]
    charge = fake_stripe.payment_intents[intent]["latest_charge"]
    assert (purchase.status, purchase.stripe_payment_intent_id) == ("paid", intent)
    assert purchase.receipt_url == f"{fake_stripe.base_url}/receipts/{charge}"
    assert fake_stripe.requests[-1].params == {"expand": ["latest_charge"]}

    # Stripe delivers an event again when it saw no 2xx in time: nothing more happens.
    again = deliver(fake_stripe, event)
    assert again.status_code == 200 and again.json()["applied"] is False
    assert balance(user) == 500 and CreditGrant.objects.filter(account__user=user).count() == 1
    assert ProcessedStripeEvent.objects.get().purchase_id == purchase.id


@pytest.mark.parametrize("order", ["completed first", "succeeded first"])
def test_a_delayed_payment_grants_once_whichever_of_its_two_events_comes_first(api, fake_stripe, order):
    user = make_user()
    purchase = checkout(api, user, make_pack(credits=300))
    (completed,) = fake_stripe.pay(purchase.stripe_session_id, async_payment=True)
    assert completed["data"]["object"]["payment_status"] == "unpaid"
    (succeeded,) = fake_stripe.settle(purchase.stripe_session_id)
    events = [completed, succeeded] if order == "completed first" else [succeeded, completed]

    deliver_all(fake_stripe, events[:1])
    purchase.refresh_from_db()
    assert purchase.status == ("processing" if order == "completed first" else "paid")
    assert balance(user) == (0 if order == "completed first" else 300)
    deliver_all(fake_stripe, events[1:])
    purchase.refresh_from_db()
    assert purchase.status == "paid" and balance(user) == 300
    assert CreditGrant.objects.filter(purchase=purchase).count() == 1


def test_a_delayed_payment_that_fails_grants_nothing(api, fake_stripe):
    user = make_user()
    purchase = checkout(api, user, make_pack())
    deliver_all(fake_stripe, fake_stripe.pay(purchase.stripe_session_id, async_payment=True))
    deliver_all(fake_stripe, fake_stripe.settle(purchase.stripe_session_id, succeeded=False))
    purchase.refresh_from_db()
    assert (purchase.status, purchase.failure_reason) == ("failed", "The payment failed")
    assert balance(user) == 0 and not CreditGrant.objects.exists()


def test_an_expired_session_grants_nothing(api, fake_stripe):
    user = make_user()
    purchase = checkout(api, user, make_pack())
    deliver_all(fake_stripe, fake_stripe.expire(purchase.stripe_session_id))
    purchase.refresh_from_db()
    assert purchase.status == "expired" and balance(user) == 0


def _forgeries(fake, event):
    payload = fake.payload(event)
    now = int(time.time())
    no_data = '{"id": "evt_1", "object": "event", "type": "checkout.session.completed"}'
    return {
        "unsigned": (None, payload),
        "another secret": (fake.signature_header(payload, secret="whsec_someone_else"), payload),
        "tampered body": (fake.signature_header(payload), payload.replace('"paid"', '"paid" ')),
        "stale": (fake.signature_header(payload, timestamp=now - 600), payload),
        "no v1 scheme": (fake.signature_header(payload).replace("v1=", "v0="), payload),
        "garbage header": ("nonsense", payload),
        "signed, not JSON": (fake.signature_header("not json"), "not json"),
        "signed, not an object": (fake.signature_header("[1, 2]"), "[1, 2]"),
        "signed, no data": (fake.signature_header(no_data), no_data),
        "signed, data not an object": (
            fake.signature_header(no_data[:-1] + ', "data": 1}'),
            no_data[:-1] + ', "data": 1}',
        ),
    }


def test_forged_stale_or_unsigned_events_are_refused_with_400_and_grant_nothing(api, fake_stripe):
    user = make_user()
    purchase = checkout(api, user, make_pack())
    (event,) = fake_stripe.pay(purchase.stripe_session_id)
    for name, (header, payload) in _forgeries(fake_stripe, event).items():
        response = deliver(fake_stripe, event, header=header or "", payload=payload)
        assert response.status_code == 400, name
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and error["param"] == "Stripe-Signature", name
        assert fake_stripe.webhook_secret not in response.content.decode(), name
    assert not ProcessedStripeEvent.objects.exists()
    assert balance(user) == 0 and Purchase.objects.get().status == "pending"
    assert deliver(fake_stripe, event).status_code == 200  # the genuine one still counts
    assert balance(user) == 500


def test_an_event_is_checked_against_the_purchase_not_trusted(api, fake_stripe):
    user = make_user()
    pack = make_pack(credits=500, price_cents=900)
    first, second = checkout(api, user, pack), checkout(api, user, pack)
    # Stripe's event for the second session, naming the first purchase: not the first's session.
    (event,) = fake_stripe.pay(second.stripe_session_id)
    event["data"]["object"]["metadata"] = {"purchase_id": first.id}
    deliver_all(fake_stripe, [event])
    assert balance(user) == 0
    # An amount or a currency other than the purchase's: failed, nothing granted.
    (event,) = fake_stripe.pay(first.stripe_session_id)
    cheaper = {**event, "id": "evt_cheaper", "data": {"object": {**event["data"]["object"], "amount_total": 1}}}
    deliver_all(fake_stripe, [cheaper])
    first.refresh_from_db()
    assert first.status == "failed" and "Stripe reported 1 usd, not 900 usd" in first.failure_reason
    assert balance(user) == 0 and not CreditGrant.objects.exists()
    # A session that is not one of the hub's (another product on the account): ignored, 200.
    foreign = fake_stripe.event("checkout.session.completed", {"id": "cs_other", "metadata": {}})
    assert deliver(fake_stripe, foreign).status_code == 200


def _paid(api, fake, user, **pack):
    purchase = checkout(api, user, make_pack(**pack))
    deliver_all(fake, fake.pay(purchase.stripe_session_id))
    purchase.refresh_from_db()
    return purchase


def _spend(user, credits: int) -> None:
    """Credits drawn from the grants as a charge draws them (an operator's claw-back: no generation
    to reconcile)."""
    credits_clawback(account=account_get_or_create(user=user), amount=credits, actor=None, reason="spent")


def test_a_full_refund_takes_back_what_is_left_of_the_purchase_and_records_the_shortfall(api, fake_stripe):
    user = make_user(credits=50)  # promotional credits, not the purchase's: never taken back
    purchase = _paid(api, fake_stripe, user, credits=500, price_cents=900)
    _spend(user, 170)  # the soonest-expiring first: the promotional 50 do not expire either, so by age
    assert balance(user) == 380
    events = fake_stripe.refund(purchase.stripe_payment_intent_id)
    deliver_all(fake_stripe, events)
    deliver_all(fake_stripe, [{**events[0], "id": "evt_repeat"}])  # the same refund reported twice

    purchase.refresh_from_db()
    assert (purchase.amount_refunded_cents, purchase.display_status) == (900, "Refunded")
    assert (purchase.credits_taken_back, purchase.credits_shortfall) == (380, 120)
    assert balance(user) == 0
    (reversal,) = LedgerEntry.objects.filter(kind=LedgerKind.REVERSAL)
    assert (reversal.amount, reversal.grant_id) == (-380, purchase.grant.pk)
    assert f"Payment refund of purchase {purchase.id}" == reversal.memo


def test_a_partial_refund_takes_back_its_share_and_a_second_one_the_rest(api, fake_stripe):
    user = make_user()
    purchase = _paid(api, fake_stripe, user, credits=500, price_cents=900)
    deliver_all(fake_stripe, fake_stripe.refund(purchase.stripe_payment_intent_id, amount=300))
    purchase.refresh_from_db()
    assert (purchase.credits_taken_back, purchase.display_status, balance(user)) == (166, "Partly refunded", 334)
    deliver_all(fake_stripe, fake_stripe.refund(purchase.stripe_payment_intent_id))
    purchase.refresh_from_db()
    assert (purchase.credits_taken_back, purchase.credits_shortfall, balance(user)) == (500, 0, 0)


def test_a_dispute_takes_back_what_is_left_and_never_more(api, fake_stripe):
    user = make_user()
    purchase = _paid(api, fake_stripe, user, credits=500)
    _spend(user, 500)
    deliver_all(fake_stripe, fake_stripe.dispute(purchase.stripe_payment_intent_id))
    purchase.refresh_from_db()
    assert (purchase.display_status, purchase.credits_taken_back, purchase.credits_shortfall) == ("Disputed", 0, 500)
    assert balance(user) == 0 and not LedgerEntry.objects.filter(kind=LedgerKind.REVERSAL).exists()


def test_a_refund_reported_before_the_payment_is_taken_back_as_the_credits_are_granted(api, fake_stripe):
    user = make_user()
    purchase = checkout(api, user, make_pack(credits=500))
    (paid,) = fake_stripe.pay(purchase.stripe_session_id)
    intent = fake_stripe.sessions[purchase.stripe_session_id]["payment_intent"]
    deliver_all(fake_stripe, fake_stripe.refund(intent))  # found by the purchase id the charge carries
    purchase.refresh_from_db()
    assert (purchase.status, purchase.amount_refunded_cents, balance(user)) == ("pending", 900, 0)
    deliver_all(fake_stripe, [paid])
    purchase.refresh_from_db()
    assert (purchase.status, purchase.credits_taken_back, balance(user)) == ("paid", 500, 0)
    kinds = list(LedgerEntry.objects.order_by("id").values_list("kind", "amount"))
    assert kinds == [("grant", 500), ("reversal", -500)]


def test_a_refund_of_a_payment_that_is_not_the_hub_s_is_ignored(fake_stripe):
    charge = {"id": "ch_x", "object": "charge", "payment_intent": "pi_x", "amount_refunded": 5, "currency": "usd"}
    assert deliver(fake_stripe, fake_stripe.event("charge.refunded", charge)).status_code == 200
    assert ProcessedStripeEvent.objects.get().purchase is None


def test_expired_paid_credits_are_not_taken_back_again(api, fake_stripe):
    user = make_user()
    purchase = _paid(api, fake_stripe, user, credits=500, expires_days=1)
    CreditGrant.objects.filter(purchase=purchase).update(expires_at=timezone.now() - timedelta(seconds=1))
    deliver_all(fake_stripe, fake_stripe.refund(purchase.stripe_payment_intent_id))
    purchase.refresh_from_db()
    assert (purchase.credits_taken_back, purchase.credits_shortfall, balance(user)) == (0, 500, 0)
    kinds = list(LedgerEntry.objects.order_by("id").values_list("kind", "amount"))
    assert kinds == [("grant", 500), ("expire", -500)]


def test_stripe_unreachable_at_checkout_answers_503_and_fails_the_purchase(api, fake_stripe):
    user = make_user()
    pack = make_pack()
    fake_stripe.fail_next(500)
    response = api.post(f"/api/v1/credit-packs/{pack.id}/checkout", **bearer(make_key(user)))
    assert response.status_code == 503 and response["x-should-retry"] == "true"
    assert response.json()["error"]["code"] == "paymentsUnavailable"
    purchase = Purchase.objects.get()
    assert purchase.status == "failed" and purchase.failure_reason.startswith("Checkout could not start")
    assert fake_stripe.api_key not in response.content.decode()


def test_a_receipt_stripe_could_not_give_comes_with_a_later_charge_event(api, fake_stripe):
    user = make_user()
    purchase = checkout(api, user, make_pack())
    fake_stripe.fail_next(500)  # the receipt's PaymentIntent read
    deliver_all(fake_stripe, fake_stripe.pay(purchase.stripe_session_id))
    purchase.refresh_from_db()
    assert (purchase.status, purchase.receipt_url) == (PurchaseStatus.PAID, "")
    deliver_all(fake_stripe, fake_stripe.refund(purchase.stripe_payment_intent_id, amount=1))
    purchase.refresh_from_db()
    assert purchase.receipt_url.startswith(f"{fake_stripe.base_url}/receipts/ch_")


def test_an_inactive_or_unknown_pack_cannot_be_bought(api, fake_stripe):
    pack = make_pack()
    pack.__class__.objects.filter(pk=pack.pk).update(active=False)
    auth = bearer(make_key(make_user()))
    for pack_id in (pack.id, "pack_nope"):
        response = api.post(f"/api/v1/credit-packs/{pack_id}/checkout", **auth)
        assert response.status_code == 404 and response.json()["error"]["code"] == "notFound"
    assert not fake_stripe.requests and not Purchase.objects.exists()


def test_an_account_opens_at_most_20_checkouts_an_hour(api, fake_stripe):
    user = make_user()
    auth = bearer(make_key(user))
    pack = make_pack()
    for _ in range(20):
        assert api.post(f"/api/v1/credit-packs/{pack.id}/checkout", **auth).status_code == 201
    refused = api.post(f"/api/v1/credit-packs/{pack.id}/checkout", **auth)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rateLimited"
    assert 1 <= int(refused["Retry-After"]) <= 3600 and refused["x-ratelimit-limit"] == "20"
    assert Purchase.objects.count() == 20 and len(fake_stripe.requests) == 20
    Purchase.objects.update(created_at=timezone.now() - timedelta(hours=1, seconds=1))
    assert api.post(f"/api/v1/credit-packs/{pack.id}/checkout", **auth).status_code == 201
