"""Row locks for moving credits, taken through these helpers only (after saleor's
`lock_objects.py`), always in one order:

1. the account row (`CreditAccount`), first and always;
2. then that account's grants, in expiry order: soonest-expiring first, never-expiring last,
   ties by creation time and id.

The account lock serializes every credit movement of one account, so two movements of the
same account never interleave; locking grants in one fixed order after it keeps any code that
takes grant locks without it (none today) from deadlocking against the movements. Movements of
several accounts (bulk grants) lock the accounts in id order.
"""

from datetime import datetime

from django.db.models import F, QuerySet

from billing.models import CreditAccount, CreditGrant

GRANT_LOCK_ORDER = (F("expires_at").asc(nulls_last=True), "created_at", "pk")


def account_lock(account: CreditAccount) -> CreditAccount:
    """Lock and re-read the account row; call inside a transaction."""
    return CreditAccount.objects.select_for_update().get(pk=account.pk)


def grants_due_lock(account: CreditAccount, now: datetime) -> QuerySet[CreditGrant]:
    """The account's unspent grants that have expired by `now`, locked in expiry order."""
    due = CreditGrant.objects.filter(account=account, remaining__gt=0, expires_at__lte=now)
    return due.select_for_update().order_by(*GRANT_LOCK_ORDER)


def grants_unspent_lock(account: CreditAccount) -> QuerySet[CreditGrant]:
    """All the account's grants with credits left — expired or not — locked in expiry order,
    which is also the order they are spent in."""
    unspent = CreditGrant.objects.filter(account=account, remaining__gt=0)
    return unspent.select_for_update().order_by(*GRANT_LOCK_ORDER)
