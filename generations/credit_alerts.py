"""What a falling or expiring balance sets off, each at most once: the low-balance alert (an email
and a `credits.low` webhook) and the auto top-up of a crossing (billing.alerts records the
crossings, billing.payments buys), and the warning that a grant expires within 7 days (an email
and a `credits.expiring` webhook).

Here, above billing, because the webhooks are the generations' machinery (generations.webhooks:
deliveries, retries, the account's signing secret); the housekeeping workers run it, a crossing
as soon as its charge commits (workers.tasks), the expiry warnings with the sweep.
"""

import logging

from django.db import transaction

from billing.alerts import (
    crossing_alert_claim,
    crossing_handled,
    crossings_unhandled,
    grant_expiring_email_send,
    grant_expiring_event_data,
    grant_expiry_warning_claim,
    grants_expiring,
    low_balance_email_send,
    low_balance_event_data,
)
from billing.models import BalanceCrossing, CreditGrant
from billing.payments import autotopup_charge
from generations.models import WebhookEvent
from generations.webhooks import webhook_account_event_create

logger = logging.getLogger(__name__)


def balance_crossings_handle(*, account_id: int) -> None:
    """Handle the account's unhandled crossings, oldest first: the alert of each crossing of the
    low-balance threshold, the top-up of each crossing of the auto top-up's. Any number of
    workers may run this for one account at once: each part is done once (a claimed alert, a
    purchase unique per crossing), and a crossing is handled once both are — a top-up Stripe
    could not be reached for stays unhandled, for the sweeper to hand over again."""
    for crossing in crossings_unhandled(account_id=account_id):
        if crossing.alert_threshold is not None and crossing.alert_sent_at is None:
            _low_balance_alert(crossing)
        if crossing.topup_threshold is None or autotopup_charge(crossing=crossing):
            crossing_handled(crossing=crossing)


def _low_balance_alert(crossing: BalanceCrossing) -> None:
    with transaction.atomic():
        if not crossing_alert_claim(crossing=crossing):
            return
        webhook_account_event_create(
            user=crossing.account.user,
            event=WebhookEvent.CREDITS_LOW,
            subject=f"crossing {crossing.pk}",
            data=low_balance_event_data(crossing),
        )
        transaction.on_commit(lambda: low_balance_email_send(crossing=crossing))
    logger.info("account %s: balance under %s credits, alert sent", crossing.account_id, crossing.alert_threshold)


def grants_expiring_warn() -> int:
    """The sweeper's part: warn the owner of each grant whose unspent credits expire within 7 days,
    once per grant; how many were warned."""
    warned = 0
    for grant in grants_expiring():
        warned += _expiry_warning(grant)
    return warned


def _expiry_warning(grant: CreditGrant) -> bool:
    with transaction.atomic():
        if not grant_expiry_warning_claim(grant=grant):
            return False
        webhook_account_event_create(
            user=grant.account.user,
            event=WebhookEvent.CREDITS_EXPIRING,
            subject=f"grant {grant.pk}",
            data=grant_expiring_event_data(grant),
        )
        transaction.on_commit(lambda: grant_expiring_email_send(grant=grant))
    return True
