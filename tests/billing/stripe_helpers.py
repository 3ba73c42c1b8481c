"""Buying credits in tests: a pack, a checkout through the API, and Stripe's events delivered to
the hub's webhook endpoint, signed by the fake Stripe (tests/fakes/stripe_server.py)."""

from django.test import Client

from billing.autotopup import autotopup_card_setup_start, autotopup_configure
from billing.models import AutoTopUp, Purchase
from billing.payments import pack_create
from billing.services import account_get_or_create
from tests.factories import bearer, make_key

WEBHOOK = "/stripe/webhook"


def make_pack(**fields):
    values = {"name": "Starter", "credits": 500, "price_cents": 900, "currency": "usd", **fields}
    return pack_create(**values)


def checkout(api, user, pack) -> Purchase:
    """The user's program opens a checkout for the pack (the API); its purchase."""
    response = api.post(f"/api/v1/credit-packs/{pack.id}/checkout", **bearer(make_key(user)))
    assert response.status_code == 201, response.content
    return Purchase.objects.get(stripe_session_id=response.json()["session_id"])


def deliver(fake, event, *, client=None, header: str | None = None, payload: str | None = None):
    """POST the event to the webhook endpoint, signed as Stripe signs it (or with `header`)."""
    payload = fake.payload(event) if payload is None else payload
    signature = fake.signature_header(payload) if header is None else header
    extra = {"HTTP_STRIPE_SIGNATURE": signature} if signature else {}
    return (client or Client()).post(WEBHOOK, data=payload, content_type="application/json", **extra)


def deliver_all(fake, events, **kwargs) -> None:
    for event in events:
        response = deliver(fake, event, **kwargs)
        assert response.status_code == 200, response.content


def autotopup_on(fake, user, pack, *, threshold: int):
    """Auto top-up of `pack` under `threshold` for the user, with a card saved through a setup
    Checkout on Stripe's page (its events delivered to the hub)."""
    account = account_get_or_create(user=user)
    autotopup_configure(account=account, pack_id=pack.id, threshold=threshold)
    url = autotopup_card_setup_start(account=account, email=user.email, return_url="http://testserver/account/billing/")
    deliver_all(fake, fake.save_card(url.rsplit("/", 1)[1]))
    return AutoTopUp.objects.get(account=account)
