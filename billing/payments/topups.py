"""Buying an auto top-up's pack for a crossing of its threshold: one purchase and one off-session
payment per crossing, settled by Stripe's answer or its `payment_intent.*` events, whichever comes first."""

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import stripe_gateway
from billing.autotopup import autotopup_failed, autotopup_succeeded
from billing.lock_objects import purchase_lock
from billing.models import AutoTopUp, BalanceCrossing, Purchase, PurchaseKind, PurchaseStatus
from billing.payments.purchases import (
    purchase_grant,
    purchase_of_payment,
    purchase_receipt_fetch,
    purchase_update,
    stripe_id,
)

logger = logging.getLogger(__name__)


# An auto top-up left unpaid because Stripe could not be reached is tried again (the sweeper
# hands its crossing over) for this long, under Stripe's 24 hours of an idempotency key: a
# retry must get the first request's answer, never make a second payment.
TOPUP_RETRY_WINDOW = timedelta(hours=23)


def autotopup_charge(*, crossing: BalanceCrossing) -> bool:
    """Buy the auto top-up's pack for a crossing of its threshold, at most once: the crossing's
    purchase (unique: the first caller makes it), then the off-session payment whose idempotency
    key is `autotopup-<account>-<crossing>` — two workers on one crossing send the same key and
    Stripe makes one payment. True once the crossing's top-up is settled (paid, processing,
    failed, or not to be made); False when Stripe could not be reached, for a retry with the same
    key."""
    purchase = Purchase.objects.filter(crossing=crossing).first() or _topup_purchase_open(crossing)
    if purchase is None or purchase.status != PurchaseStatus.PENDING:
        return True
    topup = AutoTopUp.objects.get(account_id=crossing.account_id)
    try:
        payment = stripe_gateway.payment_intent_off_session(
            idempotency_key=f"autotopup-{crossing.account_id}-{crossing.pk}",
            purchase_id=purchase.id,
            customer_id=topup.stripe_customer_id,
            payment_method_id=topup.payment_method_id,
            amount_cents=purchase.amount_cents,
            currency=purchase.currency,
            description=f"Auto top-up: {purchase.pack.name} — {purchase.credits} credits",
        )
    except stripe_gateway.StripeError as error:
        if crossing.created_at > timezone.now() - TOPUP_RETRY_WINDOW:
            logger.warning("auto top-up %s: Stripe not reached (%s), tried later", purchase.id, type(error).__name__)
            return False
        payment = stripe_gateway.OffSessionPayment(intent={}, declined="Stripe could not be reached for a day")
    with transaction.atomic():
        purchase = _topup_intent_apply(purchase_lock(pk=purchase.pk), payment.intent, declined=payment.declined)
    if purchase.status == PurchaseStatus.PAID and not purchase.receipt_url:
        purchase_receipt_fetch(purchase)
    return True


def _topup_purchase_open(crossing: BalanceCrossing) -> Purchase | None:
    """The crossing's purchase, made by the first caller (a racing one finds it); None when no
    top-up is to be made: the hub sells nothing, auto top-up was turned off or paused since, or
    the balance is back at the threshold (the user bought credits meanwhile). A pack taken off
    sale pauses auto top-up."""
    topup = AutoTopUp.objects.select_related("pack", "account").filter(account_id=crossing.account_id).first()
    if not stripe_gateway.stripe_enabled() or topup is None or not topup.is_on:
        return None
    if topup.account.balance >= topup.threshold:
        return None
    pack = topup.pack
    if not pack.active:
        with transaction.atomic():
            autotopup_failed(account_id=topup.account_id, reason=f"The pack {pack.name} is no longer sold", pause=True)
        return None
    try:
        with transaction.atomic():
            return Purchase.objects.create(
                account_id=crossing.account_id,
                pack=pack,
                kind=PurchaseKind.AUTO_TOPUP,
                crossing=crossing,
                credits=pack.credits,
                amount_cents=pack.price_cents,
                currency=pack.currency,
                expires_days=pack.expires_days,
            )
    except IntegrityError:  # a racing caller made it (its insert committed first)
        return Purchase.objects.get(crossing=crossing)


def _topup_intent_apply(purchase: Purchase, intent: dict, *, declined: str = "") -> Purchase:
    """Settle a locked auto top-up by its PaymentIntent — Stripe's answer to the payment, or a
    `payment_intent.*` event, whichever comes first (a settled purchase stays as it is):
    succeeded, for the purchase's amount and currency, grants the pack; processing waits for the
    event; anything else — a decline — fails it, which counts against auto top-up."""
    if purchase.status not in (PurchaseStatus.PENDING, PurchaseStatus.PROCESSING):
        return purchase
    intent_id = stripe_id(intent.get("id")) or purchase.stripe_payment_intent_id
    status = intent.get("status") if not declined else "declined"
    charged = (intent.get("amount"), intent.get("currency"))
    if status == "succeeded" and charged == (purchase.amount_cents, purchase.currency):
        autotopup_succeeded(account_id=purchase.account_id)
        return purchase_grant(purchase, intent_id)
    if status == "processing":
        return purchase_update(purchase, status=PurchaseStatus.PROCESSING, stripe_payment_intent_id=intent_id)
    if status == "succeeded":
        logger.error("auto top-up %s: Stripe charged %s %s, it costs %s", purchase.id, *charged, purchase.amount_cents)
        reason = f"Stripe reported {charged[0]} {charged[1]}, not {purchase.amount_cents} {purchase.currency}"
    else:
        error = intent.get("last_payment_error") or {}
        reason = declined or (error.get("message") if isinstance(error, dict) else None) or f"Payment {status}"
    purchase_update(
        purchase, status=PurchaseStatus.FAILED, failure_reason=reason[:500], stripe_payment_intent_id=intent_id
    )
    autotopup_failed(account_id=purchase.account_id, reason=reason)
    return purchase


def _topup_of_intent(intent: dict) -> Purchase | None:
    """The auto top-up a PaymentIntent pays, locked; None for any other (a Checkout's payment is
    settled by its session's events)."""
    if (intent.get("metadata") or {}).get("purpose") != stripe_gateway.AUTO_TOP_UP:
        return None
    purchase = purchase_of_payment(intent.get("id"), intent.get("metadata"))
    return purchase if purchase is not None and purchase.kind == PurchaseKind.AUTO_TOPUP else None


def autotopup_intent_event(intent: dict) -> Purchase | None:
    """payment_intent.succeeded and payment_intent.payment_failed of an auto top-up."""
    purchase = _topup_of_intent(intent)
    return _topup_intent_apply(purchase, intent) if purchase is not None else None
