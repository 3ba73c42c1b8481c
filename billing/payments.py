"""Selling credits through Stripe: packs, checkout, auto top-ups, and the webhook events that pay,
fail, refund or dispute a purchase. Credits still move only through billing.services (a paid
grant, a take-back); this module decides when.

Exactly once, whatever Stripe's deliveries do: each event id is inserted in the transaction that
applies the event (ProcessedStripeEvent, unique), so a repeated or concurrent delivery finds it
and changes nothing; the events of one purchase apply one at a time under the purchase's row
lock (lock_objects, before the account's); and the database holds one grant per purchase and one
purchase per Checkout Session. Amounts are never taken from an event: the purchase row, written
when the checkout started, says what is granted, and the event must name the same session,
amount and currency.

An auto top-up is a purchase per crossing of the account's top-up threshold (unique), paid by
one off-session PaymentIntent whose idempotency key names the crossing: workers racing on one
crossing make one purchase and, at Stripe, one payment. Stripe's synchronous answer and its
`payment_intent.*` events settle the purchase the same way under its row lock, whichever comes
first; the other finds it settled.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import stripe_gateway
from billing.autotopup import autotopup_card_saved, autotopup_failed, autotopup_succeeded
from billing.lock_objects import purchase_lock
from billing.models import (
    AutoTopUp,
    BalanceCrossing,
    CreditAccount,
    CreditPack,
    GrantSource,
    ProcessedStripeEvent,
    Purchase,
    PurchaseKind,
    PurchaseStatus,
)
from billing.services import credits_grant, credits_take_back
from hub.http.errors import InvalidRequest, NotFound, PaymentsUnavailable, RateLimited

logger = logging.getLogger(__name__)


def pack_create(
    *, name: str, credits: int, price_cents: int, currency: str, expires_days: int | None = None
) -> CreditPack:
    pack = CreditPack(
        name=name.strip(),
        credits=credits,
        price_cents=price_cents,
        currency=currency.strip().lower(),
        expires_days=expires_days,
    )
    try:
        pack.full_clean()
    except ValidationError as error:
        problems = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items())
        raise InvalidRequest(problems) from error
    pack.save()
    return pack


def pack_for_sale(*, pack_id: str) -> CreditPack:
    """An active pack, when the hub sells credits; NotFound otherwise (a pack id alone tells nothing)."""
    pack = CreditPack.objects.filter(pk=pack_id, active=True).first() if stripe_gateway.stripe_enabled() else None
    if pack is None:
        raise NotFound("No such credit pack")
    return pack


@dataclass(frozen=True)
class Checkout:
    purchase: Purchase
    session_id: str
    url: str


def checkout_start(*, account: CreditAccount, pack_id: str, customer_email: str, return_url: str) -> Checkout:
    """A pending purchase of the pack and its Stripe Checkout Session, whose page the user pays
    on; Stripe sends them back to `return_url` (`?checkout=success` or `?checkout=canceled`).
    NotFound when the hub sells nothing or the pack is not for sale; RateLimited past
    CHECKOUTS_PER_HOUR; PaymentsUnavailable when Stripe cannot open the session (the purchase is
    then failed, nothing was charged)."""
    pack = pack_for_sale(pack_id=pack_id)
    _checkouts_allowed(account)
    purchase = Purchase.objects.create(
        account=account,
        pack=pack,
        kind=PurchaseKind.CHECKOUT,
        credits=pack.credits,
        amount_cents=pack.price_cents,
        currency=pack.currency,
        expires_days=pack.expires_days,
    )
    separator = "&" if "?" in return_url else "?"
    try:
        session = stripe_gateway.checkout_session_create(
            purchase_id=purchase.id,
            product_name=f"{pack.name} — {pack.credits} credits",
            amount_cents=purchase.amount_cents,
            currency=purchase.currency,
            customer_email=customer_email,
            success_url=f"{return_url}{separator}checkout=success",
            cancel_url=f"{return_url}{separator}checkout=canceled",
        )
    except stripe_gateway.StripeError as error:
        reason = f"Checkout could not start: {error.user_message or type(error).__name__}"
        Purchase.objects.filter(pk=purchase.pk).update(
            status=PurchaseStatus.FAILED, failure_reason=reason[:500], updated_at=timezone.now()
        )
        logger.warning("purchase %s: %s", purchase.id, reason)
        raise PaymentsUnavailable() from error
    Purchase.objects.filter(pk=purchase.pk).update(stripe_session_id=session.id, updated_at=timezone.now())
    purchase.stripe_session_id = session.id
    logger.info("purchase %s: checkout session %s opened", purchase.id, session.id)
    return Checkout(purchase=purchase, session_id=session.id, url=session.url)


# Checkouts one account may open in an hour: each is a call to Stripe and a purchase row, and a
# runaway program should not make thousands.
CHECKOUTS_PER_HOUR = 20


def _checkouts_allowed(account: CreditAccount) -> None:
    """RateLimited once the account opened CHECKOUTS_PER_HOUR checkouts in the last hour (a
    count, not a lock: two racing requests may both pass the last one)."""
    since = timezone.now() - timedelta(hours=1)
    recent = Purchase.objects.filter(account=account, kind=PurchaseKind.CHECKOUT, created_at__gt=since)
    opened = list(recent.order_by("-created_at").values_list("created_at", flat=True)[:CHECKOUTS_PER_HOUR])
    if len(opened) < CHECKOUTS_PER_HOUR:
        return
    wait = max(1, int((opened[-1] - since).total_seconds()) + 1)
    raise RateLimited(
        f"At most {CHECKOUTS_PER_HOUR} checkouts an hour; finish or wait for an open one",
        limit=CHECKOUTS_PER_HOUR,
        remaining=0,
        reset=wait,
        retry_after=wait,
    )


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
        _receipt_fetch(purchase)
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


def _stripe_id(value) -> str | None:
    """An id field of a Stripe object: the id, or the expanded object's id."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _cents(value) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _receipt(url) -> str:
    """A receipt URL fit for a link: http(s) only."""
    return url[:1000] if isinstance(url, str) and url.startswith(("https://", "http://")) else ""


def _update(purchase: Purchase, **fields) -> Purchase:
    for name, value in fields.items():
        setattr(purchase, name, value)
    purchase.save(update_fields=[*fields, "updated_at"])
    return purchase


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
        return _update(purchase, status=PurchaseStatus.FAILED, failure_reason=reason)
    payment_intent = _stripe_id(session.get("payment_intent")) or purchase.stripe_payment_intent_id
    if session.get("payment_status") != "paid":
        if purchase.status == PurchaseStatus.PENDING:
            _update(purchase, status=PurchaseStatus.PROCESSING, stripe_payment_intent_id=payment_intent)
        return purchase
    return _purchase_grant(purchase, payment_intent)


def _purchase_grant(purchase: Purchase, payment_intent: str | None) -> Purchase:
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
    _update(
        purchase, status=PurchaseStatus.PAID, paid_at=now, stripe_payment_intent_id=payment_intent, failure_reason=""
    )
    logger.info(
        "purchase %s paid: %s credits granted to account %s", purchase.id, purchase.credits, purchase.account_id
    )
    _take_back_due(purchase)  # a refund or a dispute whose event came first
    return purchase


def _session_failed(session: dict) -> Purchase | None:
    """checkout.session.async_payment_failed: the delayed payment did not go through."""
    purchase = _session_purchase(session)
    if purchase is not None and purchase.status in (PurchaseStatus.PENDING, PurchaseStatus.PROCESSING):
        _update(purchase, status=PurchaseStatus.FAILED, failure_reason="The payment failed")
    return purchase


def _session_expired(session: dict) -> Purchase | None:
    """checkout.session.expired: the user never paid (Stripe expires an open session after a day)."""
    purchase = _session_purchase(session)
    if purchase is not None and purchase.status == PurchaseStatus.PENDING:
        _update(purchase, status=PurchaseStatus.EXPIRED)
    return purchase


def _payment_purchase(payment_intent, metadata) -> Purchase | None:
    """The purchase a charge or a dispute is about, locked: by its PaymentIntent, else by the
    purchase id the PaymentIntent's metadata carried onto the charge (an event that came before
    the payment's own); None for a payment that is not one of the hub's."""
    intent = _stripe_id(payment_intent)
    purchase = purchase_lock(stripe_payment_intent_id=intent) if intent else None
    purchase_id = (metadata or {}).get("purchase_id")
    if purchase is None and intent and isinstance(purchase_id, str) and purchase_id:
        candidate = purchase_lock(pk=purchase_id[:40])
        if candidate is not None and candidate.stripe_payment_intent_id is None:
            purchase = _update(candidate, stripe_payment_intent_id=intent)
    if purchase is None:
        logger.info("payment %s is not a purchase of this hub: ignored", intent)
    return purchase


def _charge_refunded(charge: dict) -> Purchase | None:
    """charge.refunded: `amount_refunded` is the charge's total so far, so a late or repeated
    event never takes back twice."""
    purchase = _payment_purchase(charge.get("payment_intent"), charge.get("metadata"))
    if purchase is None:
        return None
    if charge.get("currency") != purchase.currency:
        logger.error(
            "purchase %s: refund in %s, purchase in %s: ignored", purchase.id, charge.get("currency"), purchase.currency
        )
        return purchase
    refunded = min(_cents(charge.get("amount_refunded")), purchase.amount_cents)
    _update(
        purchase,
        amount_refunded_cents=max(purchase.amount_refunded_cents, refunded),
        receipt_url=purchase.receipt_url or _receipt(charge.get("receipt_url")),
    )
    _take_back_due(purchase)
    return purchase


def _dispute_created(dispute: dict) -> Purchase | None:
    """charge.dispute.created: the disputed amount is as good as gone; its credits are taken back now."""
    purchase = _payment_purchase(dispute.get("payment_intent"), None)
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
    _update(purchase, amount_disputed_cents=max(purchase.amount_disputed_cents, disputed))
    _take_back_due(purchase)
    return purchase


def _take_back_due(purchase: Purchase) -> None:
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
    _update(
        purchase,
        credits_taken_back=purchase.credits_taken_back + taken,
        credits_shortfall=purchase.credits_shortfall + due - taken,
    )
    if taken < due:
        logger.warning("purchase %s: %s credits called back were already spent or expired", purchase.id, due - taken)


def _receipt_fetch(purchase: Purchase) -> None:
    """Stripe's receipt page for a paid purchase (on its charge). Outside the event's
    transaction; a failure leaves the link empty until a charge event brings it."""
    if not purchase.stripe_payment_intent_id:
        return
    try:
        url = stripe_gateway.receipt_url_of_payment(payment_intent_id=purchase.stripe_payment_intent_id)
    except stripe_gateway.StripeError as error:
        logger.warning("purchase %s: receipt not fetched (%s)", purchase.id, type(error).__name__)
        return
    if _receipt(url):
        Purchase.objects.filter(pk=purchase.pk, receipt_url="").update(receipt_url=_receipt(url))


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
        _receipt_fetch(purchase)
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
    intent_id = _stripe_id(intent.get("id")) or purchase.stripe_payment_intent_id
    status = intent.get("status") if not declined else "declined"
    charged = (intent.get("amount"), intent.get("currency"))
    if status == "succeeded" and charged == (purchase.amount_cents, purchase.currency):
        autotopup_succeeded(account_id=purchase.account_id)
        return _purchase_grant(purchase, intent_id)
    if status == "processing":
        return _update(purchase, status=PurchaseStatus.PROCESSING, stripe_payment_intent_id=intent_id)
    if status == "succeeded":
        logger.error("auto top-up %s: Stripe charged %s %s, it costs %s", purchase.id, *charged, purchase.amount_cents)
        reason = f"Stripe reported {charged[0]} {charged[1]}, not {purchase.amount_cents} {purchase.currency}"
    else:
        error = intent.get("last_payment_error") or {}
        reason = declined or (error.get("message") if isinstance(error, dict) else None) or f"Payment {status}"
    _update(purchase, status=PurchaseStatus.FAILED, failure_reason=reason[:500], stripe_payment_intent_id=intent_id)
    autotopup_failed(account_id=purchase.account_id, reason=reason)
    return purchase


def _topup_of_intent(intent: dict) -> Purchase | None:
    """The auto top-up a PaymentIntent pays, locked; None for any other (a Checkout's payment is
    settled by its session's events)."""
    if (intent.get("metadata") or {}).get("purpose") != stripe_gateway.AUTO_TOP_UP:
        return None
    purchase = _payment_purchase(intent.get("id"), intent.get("metadata"))
    return purchase if purchase is not None and purchase.kind == PurchaseKind.AUTO_TOPUP else None


def _intent_event(intent: dict) -> Purchase | None:
    """payment_intent.succeeded and payment_intent.payment_failed of an auto top-up."""
    purchase = _topup_of_intent(intent)
    return _topup_intent_apply(purchase, intent) if purchase is not None else None


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
    "payment_intent.succeeded": _intent_event,
    "payment_intent.payment_failed": _intent_event,
}
# What to register on the webhook endpoint in Stripe's dashboard (README "Billing").
HANDLED_EVENTS = tuple(_HANDLERS)
