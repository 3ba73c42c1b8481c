"""Watching a falling balance: the thresholds, the crossings, and the email alerts.

A crossing is a charge or an expiry that takes the balance from a threshold or above to under it
(`crossed`). The movement records it in its own transaction, compared on the account row it has
locked (billing.services: `ledger_record` row by row, `charge_crossing` in the one-statement charge),
so concurrent charges cross once between them, and the charges that follow while the balance
stays under cross nothing. The account's two thresholds — the auto top-up's and the low-balance
alert's — are columns of that row: an account that sets neither costs its charges nothing.

After the commit the account's crossings are handed to the housekeeping queue
(CROSSINGS_TASK_NAME, by account id), which sends the alert and buys the top-up once each
(generations.credit_alerts); the sweeper hands over any crossing still unhandled after
CROSSING_GRACE (a broker that was down, a crossing the caller could not see, a Stripe outage).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from billing.lock_objects import account_lock
from billing.models import BalanceCrossing, CreditAccount, CreditGrant
from hub.http.errors import InvalidRequest
from hub.infra.timefmt import iso_z

logger = logging.getLogger(__name__)

CROSSINGS_TASK_NAME = "billing.balance_crossings"  # handles an account's crossings (workers.tasks)
# A crossing is handed over within milliseconds of its commit; the sweeper hands over what is
# left unhandled longer than this.
CROSSING_GRACE = timedelta(seconds=10)
# A grant's owner is told this long before its unspent credits expire.
EXPIRY_WARNING = timedelta(days=7)
SWEEP_BATCH = 500


def crossed(threshold: int | None, *, before: int, after: int) -> bool:
    """Whether a movement from `before` to `after` crosses `threshold` on its way down."""
    return threshold is not None and before >= threshold > after


def low_balance_threshold_set(*, account: CreditAccount, threshold: int | None) -> CreditAccount:
    """The low-balance alert's threshold (None: no alert). Under the account lock, like every
    write to the row: the charges read it there."""
    if threshold is not None and threshold <= 0:
        raise InvalidRequest("The low-balance threshold must be a positive number of credits")
    with transaction.atomic():
        account = account_lock(account)
        CreditAccount.objects.filter(pk=account.pk).update(low_balance_threshold=threshold)
        account.low_balance_threshold = threshold
    return account


def balance_watch_after_charge(*, account: CreditAccount, charged: int) -> None:
    """For a caller whose charge committed without telling it whether it crossed (generations'
    one-statement create, after its commit): hand the account's crossings to the queue when the
    account as read before the charge says the charge crossed a threshold. No query, no message
    when the account watches no threshold or the charge crossed none.

    That read was not under the lock: with concurrent charges of the account in between, the
    charge that crossed may look here as if it did not — the sweeper then hands its crossing over
    (CROSSING_GRACE); a message for nothing finds no crossing to handle."""
    before = account.balance
    for threshold in (account.auto_topup_threshold, account.low_balance_threshold):
        if crossed(threshold, before=before, after=before - charged):
            balance_crossings_enqueue(account_id=account.pk)
            return


def balance_crossings_enqueue(*, account_id: int) -> None:
    """Hand the account's unhandled crossings to the housekeeping workers. A broker that is down
    loses nothing: the crossing stays unhandled and the sweeper hands it over."""
    from hub.celery import app

    try:
        app.send_task(
            CROSSINGS_TASK_NAME,
            args=[account_id],
            queue=settings.HOUSEKEEPING_QUEUE,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
        )
    except Exception as exc:  # noqa: BLE001 — kombu raises transport-specific errors; the sweeper resends
        logger.warning("crossings of account %s: broker unavailable, the sweeper sends them: %s", account_id, exc)


def balance_crossings_send_due() -> list[int]:
    """The sweeper's part: hand over the accounts whose crossings are unhandled longer than
    CROSSING_GRACE (a duplicate message is harmless: each part of a crossing is done once)."""
    due = BalanceCrossing.objects.filter(handled_at__isnull=True, created_at__lt=timezone.now() - CROSSING_GRACE)
    accounts = sorted(set(due.order_by("created_at").values_list("account_id", flat=True)[:SWEEP_BATCH]))
    for account_id in accounts:
        balance_crossings_enqueue(account_id=account_id)
    return accounts


def crossings_unhandled(*, account_id: int) -> list[BalanceCrossing]:
    unhandled = BalanceCrossing.objects.filter(account_id=account_id, handled_at__isnull=True)
    return list(unhandled.select_related("account__user").order_by("created_at", "pk"))


def crossing_alert_claim(*, crossing: BalanceCrossing) -> bool:
    """True for the one caller that sends the crossing's low-balance alert (a conditional update:
    a duplicate task, or one racing it, finds it taken). Call it in the transaction that records
    the alert's webhook delivery, so the two commit together."""
    return bool(
        BalanceCrossing.objects.filter(pk=crossing.pk, alert_sent_at__isnull=True).update(alert_sent_at=timezone.now())
    )


def crossing_handled(*, crossing: BalanceCrossing) -> None:
    BalanceCrossing.objects.filter(pk=crossing.pk, handled_at__isnull=True).update(handled_at=timezone.now())


def low_balance_event_data(crossing: BalanceCrossing) -> dict:
    """`data` of the `credits.low` webhook (docs/api.md)."""
    return {"credits": crossing.balance_after, "threshold": crossing.alert_threshold}


def low_balance_email_send(*, crossing: BalanceCrossing) -> None:
    context = {"credits": crossing.balance_after, "threshold": crossing.alert_threshold}
    email_send(to=crossing.account.user.email, template="low_balance", context=context)


def grants_expiring() -> list[CreditGrant]:
    """Grants with credits left that expire within EXPIRY_WARNING and whose owner was not told."""
    now = timezone.now()
    expiring = CreditGrant.objects.filter(
        remaining__gt=0,
        expiry_warned_at__isnull=True,
        expires_at__gt=now,
        expires_at__lte=now + EXPIRY_WARNING,
    )
    return list(expiring.select_related("account__user").order_by("expires_at", "pk")[:SWEEP_BATCH])


def grant_expiry_warning_claim(*, grant: CreditGrant) -> bool:
    """True for the one caller that warns of the grant's expiry (a conditional update of that grant
    alone; it moves no credits). Call it in the transaction that records the warning's webhook."""
    return bool(
        CreditGrant.objects.filter(pk=grant.pk, expiry_warned_at__isnull=True).update(expiry_warned_at=timezone.now())
    )


def grant_expiring_event_data(grant: CreditGrant) -> dict:
    """`data` of the `credits.expiring` webhook (docs/api.md)."""
    return {
        "credits": grant.account.balance,
        "expiring": {"credits": grant.remaining, "expires_at": iso_z(grant.expires_at)},
    }


def grant_expiring_email_send(*, grant: CreditGrant) -> None:
    context = {"credits": grant.remaining, "expires_at": grant.expires_at, "balance": grant.account.balance}
    email_send(to=grant.account.user.email, template="credits_expiring", context=context)


def email_send(*, to: str, template: str, context: dict) -> None:
    """One of billing's emails (billing/templates/billing/email/), with the Billing page's address
    when PUBLIC_BASE_URL says where the hub is. Sent after the commit of what it reports; a mail
    server that refuses it is logged, and what it reported stands."""
    base = settings.PUBLIC_BASE_URL
    context = {**context, "billing_url": base + reverse("accounts:billing") if base else ""}
    subject = render_to_string(f"billing/email/{template}_subject.txt", context).strip()
    body = render_to_string(f"billing/email/{template}.txt", context)
    try:
        send_mail(subject, body, None, [to])
    except Exception:  # noqa: BLE001 — SMTP and the backends raise their own errors
        logger.exception("the %s email (to an address at %s) was not sent", template, to.rpartition("@")[2])
