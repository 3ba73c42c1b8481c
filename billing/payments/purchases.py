"""A purchase's settlement, whichever Stripe path pays it (a Checkout's events, an auto top-up's
payment): the grant when paid, the take-back of what refunds and disputes call back, the receipt.
Every function here but the receipt's runs on a purchase locked by the caller's transaction."""

import logging
from datetime import timedelta

from django.utils import timezone

from billing import stripe_gateway
from billing.lock_objects import purchase_lock
from billing.models import GrantSource, Purchase, PurchaseKind, PurchaseStatus
from billing.services import credits_grant, credits_take_back

logger = logging.getLogger(__name__)


def stripe_id(value) -> str | None:
    """An id field of a Stripe object: the id, or the expanded object's id."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def receipt_link(url) -> str:
    """A receipt URL fit for a link: http(s) only."""
    return url[:1000] if isinstance(url, str) and url.startswith(("https://", "http://")) else ""


def purchase_update(purchase: Purchase, **fields) -> Purchase:
    """Set and save `fields` of a locked purchase (and its updated_at)."""
    for name, value in fields.items():
        setattr(purchase, name, value)
    purchase.save(update_fields=[*fields, "updated_at"])
    return purchase


def purchase_grant(purchase: Purchase, payment_intent: str | None) -> Purchase:
    """A locked purchase paid: its grant (billing.services), then the take-back of what a refund or
    a dispute whose event came first already called back."""
    now = timezone.now()
    expires_at = now + timedelta(days=purchase.expires_days) if purchase.expires_days else None
    name = purchase.pack.name if purchase.pack_id else purchase.get_kind_display()
    if purchase.kind == PurchaseKind.AUTO_TOPUP:
        name = f"Auto top-up: {name}"
    credits_grant(
        account=purchase.account,
        amount=purchase.credits,
        source=GrantSource.PURCHASE,
        reason=f"{name} ({purchase.id})",
        expires_at=expires_at,
        purchase=purchase,
    )
    purchase_update(
        purchase, status=PurchaseStatus.PAID, paid_at=now, stripe_payment_intent_id=payment_intent, failure_reason=""
    )
    logger.info(
        "purchase %s paid: %s credits granted to account %s", purchase.id, purchase.credits, purchase.account_id
    )
    purchase_take_back_due(purchase)  # a refund or a dispute whose event came first
    return purchase


def purchase_of_payment(payment_intent, metadata) -> Purchase | None:
    """The purchase a charge or a dispute is about, locked: by its PaymentIntent, else by the
    purchase id the PaymentIntent's metadata carried onto the charge (an event that came before
    the payment's own); None for a payment that is not one of the hub's."""
    intent = stripe_id(payment_intent)
    purchase = purchase_lock(stripe_payment_intent_id=intent) if intent else None
    purchase_id = (metadata or {}).get("purchase_id")
    if purchase is None and intent and isinstance(purchase_id, str) and purchase_id:
        candidate = purchase_lock(pk=purchase_id[:40])
        if candidate is not None and candidate.stripe_payment_intent_id is None:
            purchase = purchase_update(candidate, stripe_payment_intent_id=intent)
    if purchase is None:
        logger.info("payment %s is not a purchase of this hub: ignored", intent)
    return purchase


def purchase_take_back_due(purchase: Purchase) -> None:
    """Take back the credits the refunds and disputes call back and were not yet taken (or
    found spent): what is left of the purchase's grant, never more; the rest is the purchase's
    shortfall, for the operator. Nothing before the grant: the grant calls this itself."""
    if purchase.status != PurchaseStatus.PAID:
        return
    due = purchase.credits_called_back - purchase.credits_taken_back - purchase.credits_shortfall
    if due <= 0:
        return
    why = "dispute" if purchase.amount_disputed_cents else "refund"
    taken = credits_take_back(grant=purchase.grant, amount=due, memo=f"Payment {why} of purchase {purchase.id}")
    purchase_update(
        purchase,
        credits_taken_back=purchase.credits_taken_back + taken,
        credits_shortfall=purchase.credits_shortfall + due - taken,
    )
    if taken < due:
        logger.warning("purchase %s: %s credits called back were already spent or expired", purchase.id, due - taken)


def purchase_receipt_fetch(purchase: Purchase) -> None:
    """Stripe's receipt page for a paid purchase (on its charge). Outside the event's
    transaction; a failure leaves the link empty until a charge event brings it."""
    if not purchase.stripe_payment_intent_id:
        return
    try:
        url = stripe_gateway.receipt_url_of_payment(payment_intent_id=purchase.stripe_payment_intent_id)
    except stripe_gateway.StripeError as error:
        logger.warning("purchase %s: receipt not fetched (%s)", purchase.id, type(error).__name__)
        return
    if receipt_link(url):
        Purchase.objects.filter(pk=purchase.pk, receipt_url="").update(receipt_url=receipt_link(url))
