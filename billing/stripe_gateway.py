"""The hub's only calls to Stripe, through the official library's StripeClient: the client is
built from the settings (STRIPE_API_BASE points it at another server — stripe-mock, the tests'
fake), and nothing here reads or writes the database."""

from dataclasses import dataclass

import stripe
from django.conf import settings

from hub.infra.singletons import per_process

# A call to Stripe waits at most this long (the library's own default is 80 s); the library
# retries network failures and 409/429/5xx answers this often, with the same idempotency key.
TIMEOUT_SECONDS = 20
NETWORK_RETRIES = 2

StripeError = stripe.StripeError

AUTO_TOP_UP = "auto_top_up"  # `purpose` in the metadata of what auto top-up makes at Stripe


class InvalidStripeEvent(Exception):
    """A webhook body that is not a Stripe event signed with the endpoint's secret, recently."""


def stripe_enabled() -> bool:
    """Whether the hub sells credits (both Stripe settings are set: hub.settings checks they go together)."""
    return bool(settings.STRIPE_SECRET_KEY and settings.STRIPE_WEBHOOK_SECRET)


@per_process
def _client(api_key: str, api_base: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else None,
        max_network_retries=NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=TIMEOUT_SECONDS),
    )


def client() -> stripe.StripeClient:
    return _client(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE)


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


def checkout_session_create(
    *,
    purchase_id: str,
    product_name: str,
    amount_cents: int,
    currency: str,
    customer_email: str,
    success_url: str,
    cancel_url: str,
) -> CheckoutSession:
    """A one-time payment's Checkout Session. The purchase id rides in the session's and the
    PaymentIntent's metadata (the events name it) and is the idempotency key: a retried call
    cannot open a second session for one purchase."""
    metadata = {"purchase_id": purchase_id}
    session = client().v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency,
                        "unit_amount": amount_cents,
                        "product_data": {"name": product_name},
                    },
                }
            ],
            "client_reference_id": purchase_id,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "customer_email": customer_email,
            "success_url": success_url,
            "cancel_url": cancel_url,
        },
        options={"idempotency_key": f"checkout-{purchase_id}"},
    )
    return CheckoutSession(id=session.id, url=session.url)


def receipt_url_of_payment(*, payment_intent_id: str) -> str:
    """The receipt page of the PaymentIntent's charge ("" when it has none yet)."""
    intent = client().v1.payment_intents.retrieve(payment_intent_id, params={"expand": ["latest_charge"]})
    charge = intent.latest_charge
    return (getattr(charge, "receipt_url", None) or "") if charge is not None else ""


def event_verify(*, payload: bytes, signature: str | None) -> dict:
    """The event in a webhook body, as a plain dict, once its `Stripe-Signature` is checked by the
    library (stripe.Webhook.construct_event: HMAC-SHA256 with the endpoint's secret, and a
    timestamp at most 5 minutes old). InvalidStripeEvent for anything else."""
    try:
        event = client().construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET)
    # ValueError: not UTF-8 or not JSON; AttributeError: signed JSON that is not an object.
    except (stripe.SignatureVerificationError, ValueError, AttributeError) as error:
        raise InvalidStripeEvent(str(error).split("\n")[0]) from error
    data = event.to_dict()
    named = all(_text(data.get(field), longest) for field, longest in (("id", 255), ("type", 100)))
    inner = data.get("data")
    if not named or not isinstance(inner, dict) or not isinstance(inner.get("object"), dict):
        raise InvalidStripeEvent("Not a Stripe event: id, type and data.object are required")
    return data


def _text(value, longest: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= longest


def customer_create(*, account_id: int, email: str) -> str:
    """A Stripe Customer for the account (its saved card belongs to one); the account id is the
    idempotency key, so a retried call or two at once make one customer."""
    customer = client().v1.customers.create(
        params={"email": email, "metadata": {"account_id": str(account_id)}},
        options={"idempotency_key": f"customer-{account_id}"},
    )
    return customer.id


def setup_session_create(*, account_id: int, customer_id: str, success_url: str, cancel_url: str) -> CheckoutSession:
    """A Checkout Session in setup mode: Stripe's page saves a card to the customer for later
    off-session payments, and its SetupIntent (`setup_intent.succeeded`) names the account in
    its metadata."""
    metadata = {"account_id": str(account_id), "purpose": AUTO_TOP_UP}
    session = client().v1.checkout.sessions.create(
        params={
            "mode": "setup",
            "customer": customer_id,
            "payment_method_types": ["card"],
            "metadata": metadata,
            "setup_intent_data": {"metadata": metadata, "description": "Auto top-up of credits"},
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
    )
    return CheckoutSession(id=session.id, url=session.url)


def card_label(*, payment_method_id: str) -> str:
    """How the page names a saved card: "visa •••• 4242" ("" for what is not a card)."""
    method = client().v1.payment_methods.retrieve(payment_method_id)
    card = getattr(method, "card", None)
    return f"{card.brand} •••• {card.last4}" if card is not None else ""


@dataclass(frozen=True)
class OffSessionPayment:
    intent: dict  # the PaymentIntent as Stripe answered it, or as its decline carried it ({} if neither)
    declined: str = ""  # why Stripe refused the payment (a card error), "" when it did not


def payment_intent_off_session(
    *,
    idempotency_key: str,
    purchase_id: str,
    customer_id: str,
    payment_method_id: str,
    amount_cents: int,
    currency: str,
    description: str,
) -> OffSessionPayment:
    """Charge the saved card now, with no customer present (`off_session`, confirmed at once).
    A refusal — the card declined, or the bank wants the customer there (authentication) — is
    Stripe's 402 card error, answered here as `declined`; anything else that goes wrong (network,
    Stripe's 5xx) raises StripeError, and the caller may try again with the same idempotency key:
    Stripe answers a repeated key with the first request's answer, a decline too, so one key
    makes one payment at most."""
    try:
        intent = client().v1.payment_intents.create(
            params={
                "amount": amount_cents,
                "currency": currency,
                "customer": customer_id,
                "payment_method": payment_method_id,
                "off_session": True,
                "confirm": True,
                "description": description,
                "metadata": {"purchase_id": purchase_id, "purpose": AUTO_TOP_UP},
            },
            options={"idempotency_key": idempotency_key},
        )
    except stripe.CardError as error:
        body = (error.json_body or {}).get("error") or {}
        intent = body.get("payment_intent") if isinstance(body.get("payment_intent"), dict) else {}
        reason = error.user_message or "The card was declined"
        decline = body.get("decline_code")
        return OffSessionPayment(intent=intent, declined=f"{reason} ({decline})" if decline else reason)
    return OffSessionPayment(intent=intent.to_dict())
