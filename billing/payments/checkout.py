"""Selling credit packs: the packs, and the Checkout a user opens to buy one (a pending purchase
that the Stripe events of billing.payments.events settle)."""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone

from billing import stripe_gateway
from billing.models import CreditAccount, CreditPack, Purchase, PurchaseKind, PurchaseStatus
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
