"""An account's auto top-up: the settings the Billing page edits, the card a setup Checkout saves,
and the failures that pause it. Buying the pack for a crossing — one purchase and one off-session
payment per crossing — is billing.payments.autotopup_charge.

Whether it is on (enabled, a card saved, not paused) is written to
CreditAccount.auto_topup_threshold, which the charges compare against on the row they lock
(billing.alerts); every change here takes that account lock first, as every write to the row
does, and writes the column in the same transaction.
"""

import logging

from django.db import transaction
from django.utils import timezone

from billing import stripe_gateway
from billing.alerts import email_send
from billing.lock_objects import account_lock
from billing.models import AutoTopUp, CreditAccount
from billing.money import money
from billing.selectors import packs_for_sale
from hub.http.errors import InvalidRequest, NotFound, PaymentsUnavailable

logger = logging.getLogger(__name__)

# Failed top-ups in a row that pause auto top-up (a success resets the count).
MAX_FAILURES = 2


def autotopup_of(*, account: CreditAccount) -> AutoTopUp | None:
    return AutoTopUp.objects.select_related("pack").filter(account=account).first()


def autotopup_configure(*, account: CreditAccount, pack_id: str, threshold: int) -> AutoTopUp:
    """Save the pack and the threshold and turn auto top-up on — resumed, if it was paused: on at
    once when a card is saved, else once a setup Checkout saves one. NotFound for a pack that is
    not for sale (or a hub that sells nothing)."""
    pack = packs_for_sale().filter(pk=pack_id).first() if stripe_gateway.stripe_enabled() else None
    if pack is None:
        raise NotFound("No such credit pack")
    if threshold <= 0:
        raise InvalidRequest("The threshold must be a positive number of credits", param="threshold")
    with transaction.atomic():
        account = account_lock(account)
        topup, _ = AutoTopUp.objects.update_or_create(
            account=account,
            defaults={
                "pack": pack,
                "threshold": threshold,
                "enabled": True,
                "consecutive_failures": 0,
                "paused_at": None,
                "pause_reason": "",
            },
        )
        _sync(account, topup)
    logger.info("auto top-up of account %s: %s under %s credits", account.pk, pack.pk, threshold)
    return topup


def autotopup_card_setup_start(*, account: CreditAccount, email: str, return_url: str) -> str:
    """The URL of a Checkout Session in setup mode, where the user saves a card for auto top-up
    (to the account's Stripe Customer, made on first use); Stripe sends them back to `return_url`
    (`?card=saved` or `?card=canceled`), and the card comes with `setup_intent.succeeded`.
    PaymentsUnavailable when Stripe cannot be reached."""
    topup = autotopup_of(account=account)
    if topup is None or not stripe_gateway.stripe_enabled():
        raise InvalidRequest("Choose a pack and a threshold first")
    separator = "&" if "?" in return_url else "?"
    try:
        customer_id = topup.stripe_customer_id or _customer_create(topup, email)
        session = stripe_gateway.setup_session_create(
            account_id=account.pk,
            customer_id=customer_id,
            success_url=f"{return_url}{separator}card=saved",
            cancel_url=f"{return_url}{separator}card=canceled",
        )
    except stripe_gateway.StripeError as error:
        logger.warning("auto top-up of account %s: card setup could not start (%s)", account.pk, type(error).__name__)
        raise PaymentsUnavailable() from error
    logger.info("auto top-up of account %s: card setup session %s opened", account.pk, session.id)
    return session.url


def _customer_create(topup: AutoTopUp, email: str) -> str:
    customer_id = stripe_gateway.customer_create(account_id=topup.account_id, email=email)
    AutoTopUp.objects.filter(pk=topup.pk, stripe_customer_id="").update(stripe_customer_id=customer_id)
    return customer_id


def autotopup_card_saved(*, setup_intent: dict) -> None:
    """`setup_intent.succeeded` of a setup Checkout opened here: the card is the auto top-up's,
    which is on again from a clean slate (a paused one resumes). A SetupIntent that names no
    account of this hub, or another customer than the account's, changes nothing."""
    metadata = setup_intent.get("metadata") or {}
    account_id = metadata.get("account_id")
    method = setup_intent.get("payment_method")
    method = method.get("id") if isinstance(method, dict) else method
    if metadata.get("purpose") != stripe_gateway.AUTO_TOP_UP or not str(account_id).isdigit() or not method:
        logger.info("setup intent %s is not an auto top-up's: ignored", setup_intent.get("id"))
        return
    topup = AutoTopUp.objects.filter(account_id=int(account_id)).first()
    customer = setup_intent.get("customer")
    if topup is None or not topup.stripe_customer_id or topup.stripe_customer_id != customer:
        logger.warning("setup intent %s: customer %s is not account %s's", setup_intent.get("id"), customer, account_id)
        return
    account = account_lock(topup.account)
    topup = autotopup_of(account=account)  # as of the lock
    _update(
        topup,
        payment_method_id=str(method)[:255],
        card_label="",
        consecutive_failures=0,
        paused_at=None,
        pause_reason="",
    )
    _sync(account, topup)
    logger.info("auto top-up of account %s: card saved", account.pk)
    transaction.on_commit(lambda: _card_label_fetch(topup.pk, topup.payment_method_id))


def _card_label_fetch(topup_id: int, payment_method_id: str) -> None:
    """The card's brand and last digits, for the page; outside the event's transaction."""
    try:
        label = stripe_gateway.card_label(payment_method_id=payment_method_id)
    except stripe_gateway.StripeError as error:
        logger.warning("auto top-up %s: card label not fetched (%s)", topup_id, type(error).__name__)
        return
    AutoTopUp.objects.filter(pk=topup_id, payment_method_id=payment_method_id).update(card_label=label[:100])


@transaction.atomic
def autotopup_disable(*, account: CreditAccount) -> None:
    account = account_lock(account)
    topup = autotopup_of(account=account)
    if topup is not None:
        _update(topup, enabled=False)
        _sync(account, topup)


@transaction.atomic
def autotopup_resume(*, account: CreditAccount) -> None:
    """A paused auto top-up on again, its failures forgotten."""
    account = account_lock(account)
    topup = autotopup_of(account=account)
    if topup is not None and topup.paused_at is not None:
        _update(topup, paused_at=None, pause_reason="", consecutive_failures=0)
        _sync(account, topup)


def autotopup_failed(*, account_id: int, reason: str, pause: bool = False) -> None:
    """A top-up that did not go through (billing.payments, in its transaction): one more failure
    in a row, and the user is emailed after the commit; the MAX_FAILURES-th in a row (or a
    `pause` at once: its pack is no longer sold) pauses auto top-up."""
    account = account_lock(CreditAccount(pk=account_id))
    topup = autotopup_of(account=account)
    if topup is None:
        return
    failures = topup.consecutive_failures + 1
    paused = pause or failures >= MAX_FAILURES
    fields = {"consecutive_failures": failures}
    if paused and topup.paused_at is None:
        fields |= {"paused_at": timezone.now(), "pause_reason": reason[:500]}
    _update(topup, **fields)
    _sync(account, topup)
    logger.warning("auto top-up of account %s failed, %s in a row (paused: %s)", account.pk, failures, paused)
    context = {
        "threshold": topup.threshold,
        "pack": topup.pack.name,
        "price": money(topup.pack.price_cents, topup.pack.currency),
        "reason": reason,
        "paused": paused,
    }
    email = account.user.email
    transaction.on_commit(lambda: email_send(to=email, template="topup_failed", context=context))


def autotopup_succeeded(*, account_id: int) -> None:
    """A top-up paid (billing.payments, in its transaction): the failures in a row start over."""
    AutoTopUp.objects.filter(account_id=account_id, consecutive_failures__gt=0).update(consecutive_failures=0)


def _update(topup: AutoTopUp, **fields) -> None:
    for name, value in fields.items():
        setattr(topup, name, value)
    topup.save(update_fields=[*fields, "updated_at"])


def _sync(account: CreditAccount, topup: AutoTopUp | None) -> None:
    """Write whether auto top-up is on to the locked account row the charges read."""
    threshold = topup.threshold if topup is not None and topup.is_on else None
    if account.auto_topup_threshold != threshold:
        CreditAccount.objects.filter(pk=account.pk).update(auto_topup_threshold=threshold)
        account.auto_topup_threshold = threshold
