"""Stripe's webhook events, each applied once: a Checkout paid, failed or expired, a charge
refunded or disputed, a card saved for auto top-up, an auto top-up's payment settled."""

import logging

from django.db import IntegrityError, transaction

from billing.autotopup import autotopup_card_saved
from billing.lock_objects import purchase_lock
from billing.models import ProcessedStripeEvent, Purchase, PurchaseStatus
from billing.payments.purchases import (
    purchase_grant,
    purchase_of_payment,
    purchase_receipt_fetch,
    purchase_take_back_due,
    purchase_update,
    receipt_link,
    stripe_id,
)
from billing.payments.topups import autotopup_intent_event

logger = logging.getLogger(__name__)


def stripe_event_apply(*, event: dict) -> bool:
    """Apply a verified Stripe event (stripe_gateway.event_verify) once: False when its id was
    applied before. Events the hub does not act on are recorded and otherwise ignored."""
    handler = _HANDLERS.get(event["type"])
    with transaction.atomic():
        if not _event_claim(event):
            logger.info("stripe event %s (%s) was already applied", event["id"], event["type"])
            return False
        purchase = handler(event["data"]["object"]) if handler else None
        if purchase is not None:
            ProcessedStripeEvent.objects.filter(pk=event["id"]).update(purchase=purchase)
    if purchase is not None and purchase.status == PurchaseStatus.PAID and not purchase.receipt_url:
        purchase_receipt_fetch(purchase)
    return True


def _event_claim(event: dict) -> bool:
    """Insert the event's id; False if it is there already. A concurrent delivery's insert waits
    for this transaction and fails once it commits (or goes ahead if it rolls back)."""
    try:
        with transaction.atomic():
            ProcessedStripeEvent.objects.create(event_id=event["id"], type=event["type"])
    except IntegrityError:
        return False
    return True


def _cents(value) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _session_purchase(session: dict) -> Purchase | None:
    """The purchase a Checkout Session was opened for, locked; None for a session that is not
    one of the hub's (another product on the same Stripe account) or names a purchase whose
    session it is not."""
    purchase_id = (session.get("metadata") or {}).get("purchase_id") or session.get("client_reference_id")
    if not isinstance(purchase_id, str) or not purchase_id:
        logger.info("checkout session %s is not a purchase of this hub: ignored", session.get("id"))
        return None
    purchase = purchase_lock(pk=purchase_id[:40])
    if purchase is None or purchase.stripe_session_id != session.get("id"):
        logger.warning("checkout session %s names purchase %s, not its own: ignored", session.get("id"), purchase_id)
        return None
    return purchase


def _session_settled(session: dict) -> Purchase | None:
    """checkout.session.completed and checkout.session.async_payment_succeeded, in either order:
    the first that finds the session paid grants the credits; an unpaid completion (a payment
    method that settles later) marks the purchase processing. A setup session (auto top-up's
    card) pays nothing: its card comes with setup_intent.succeeded."""
    if session.get("mode") == "setup":
        return None
    purchase = _session_purchase(session)
    if purchase is None or purchase.status == PurchaseStatus.PAID:
        return purchase
    charged = (session.get("amount_total"), session.get("currency"))
    if charged != (purchase.amount_cents, purchase.currency):
        logger.error(
            "purchase %s: Stripe charged %s %s, the purchase costs %s", purchase.id, *charged, purchase.amount_cents
        )
        reason = (
            f"Stripe reported {charged[0]} {charged[1]}, not {purchase.amount_cents} {purchase.currency}: not granted"
        )
        return purchase_update(purchase, status=PurchaseStatus.FAILED, failure_reason=reason)
    payment_intent = stripe_id(session.get("payment_intent")) or purchase.stripe_payment_intent_id
    if session.get("payment_status") != "paid":
        if purchase.status == PurchaseStatus.PENDING:
            purchase_update(purchase, status=PurchaseStatus.PROCESSING, stripe_payment_intent_id=payment_intent)
        return purchase
    return purchase_grant(purchase, payment_intent)


def _session_failed(session: dict) -> Purchase | None:
    """checkout.session.async_payment_failed: the delayed payment did not go through."""
    purchase = _session_purchase(session)
    if purchase is not None and purchase.status in (PurchaseStatus.PENDING, PurchaseStatus.PROCESSING):
        purchase_update(purchase, status=PurchaseStatus.FAILED, failure_reason="The payment failed")
    return purchase


def _session_expired(session: dict) -> Purchase | None:
    """checkout.session.expired: the user never paid (Stripe expires an open session after a day)."""
    purchase = _session_purchase(session)
    if purchase is not None and purchase.status == PurchaseStatus.PENDING:
        purchase_update(purchase, status=PurchaseStatus.EXPIRED)
    return purchase


def _charge_refunded(charge: dict) -> Purchase | None:
    """charge.refunded: `amount_refunded` is the charge's total so far, so a late or repeated
    event never takes back twice."""
    purchase = purchase_of_payment(charge.get("payment_intent"), charge.get("metadata"))
    if purchase is None:
        return None
    if charge.get("currency") != purchase.currency:
        logger.error(
            "purchase %s: refund in %s, purchase in %s: ignored", purchase.id, charge.get("currency"), purchase.currency
        )
        return purchase
    refunded = min(_cents(charge.get("amount_refunded")), purchase.amount_cents)
    purchase_update(
        purchase,
        amount_refunded_cents=max(purchase.amount_refunded_cents, refunded),
        receipt_url=purchase.receipt_url or receipt_link(charge.get("receipt_url")),
    )
    purchase_take_back_due(purchase)
    return purchase


def _dispute_created(dispute: dict) -> Purchase | None:
    """charge.dispute.created: the disputed amount is as good as gone; its credits are taken back now."""
    purchase = purchase_of_payment(dispute.get("payment_intent"), None)
    if purchase is None:
        return None
    if dispute.get("currency") != purchase.currency:
        logger.error(
            "purchase %s: dispute in %s, purchase in %s: ignored",
            purchase.id,
            dispute.get("currency"),
            purchase.currency,
        )
        return purchase
    disputed = min(_cents(dispute.get("amount")), purchase.amount_cents)
    purchase_update(purchase, amount_disputed_cents=max(purchase.amount_disputed_cents, disputed))
    purchase_take_back_due(purchase)
    return purchase


def _setup_succeeded(setup_intent: dict) -> None:
    """setup_intent.succeeded: a card saved for auto top-up (billing.autotopup)."""
    autotopup_card_saved(setup_intent=setup_intent)


_HANDLERS = {
    "checkout.session.completed": _session_settled,
    "checkout.session.async_payment_succeeded": _session_settled,
    "checkout.session.async_payment_failed": _session_failed,
    "checkout.session.expired": _session_expired,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_created,
    "setup_intent.succeeded": _setup_succeeded,
    "payment_intent.succeeded": autotopup_intent_event,
    "payment_intent.payment_failed": autotopup_intent_event,
}
# What to register on the webhook endpoint in Stripe's dashboard (README "Billing").
HANDLED_EVENTS = tuple(_HANDLERS)
