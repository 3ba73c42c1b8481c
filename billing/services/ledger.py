"""The ledger: an account's grants, their expiry, take-backs and claw-backs, and the one helper
every movement writes through. Every movement locks the account row (then grants, in the order
`lock_objects` writes down), writes a ledger row and updates the cached balance in one
transaction; a generation's charge and refund (billing.services.charges) draw through here too."""

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from billing.alerts import balance_crossings_enqueue, crossed
from billing.lock_objects import account_and_grants_lock, account_lock, grant_lock, grants_due_lock
from billing.models import (
    BalanceCrossing,
    CreditAccount,
    CreditGrant,
    GrantKind,
    GrantSource,
    LedgerEntry,
    LedgerKind,
    Purchase,
)
from hub.compiled import INT_MARKER, CompiledQuery
from hub.http.errors import InsufficientCredits, InvalidRequest

logger = logging.getLogger(__name__)


def account_get_or_create(*, user) -> CreditAccount:
    """The user's account; read by a compiled query (hub.compiled: every generation request and
    refund reads it), made on first use."""
    found = _ACCOUNT_OF_USER.all(user.pk)
    if found:
        return found[0]
    account, _ = CreditAccount.objects.get_or_create(user=user)
    return account


_ACCOUNT_OF_USER = CompiledQuery(lambda user_id: CreditAccount.objects.filter(user_id=user_id), INT_MARKER)


def account_as_read(*, user) -> CreditAccount:
    """The account as it was read with `user` — the API key lookup joins it (apikeys.services) —
    or, when it was not, account_get_or_create. For checks made without a lock and repeated by
    the charge under it (a generation's precheck), not for a balance to show after a charge.
    The model through `_meta`: a session's `request.user` (the playground's) is a lazy proxy."""
    account = user._meta.model.credit_account.related.get_cached_value(user, default=None)
    return account if account is not None else account_get_or_create(user=user)


def account_settle(*, user) -> CreditAccount:
    """The user's account with due grants expired: the balance as the user should see it."""
    account = account_get_or_create(user=user)
    if credits_expire_due(account=account):
        account.refresh_from_db()
    return account


@transaction.atomic
def account_set_type(*, account: CreditAccount, account_type: str) -> CreditAccount:
    """Through the account lock like every write to the row (hub.db: a lock holder never yields)."""
    account = account_lock(account)
    CreditAccount.objects.filter(pk=account.pk).update(account_type=account_type)
    account.refresh_from_db()
    return account


def ledger_record(account: CreditAccount, *, kind: str, amount: int, **fields) -> LedgerEntry:
    """Every movement's own write, on the locked account: the cached balance, its ledger row and,
    for spending and expiry, the threshold crossing it makes."""
    before = account.balance
    account.balance += amount
    CreditAccount.objects.filter(pk=account.pk).update(balance=account.balance, updated_at=timezone.now())
    entry = LedgerEntry.objects.create(
        account=account, kind=kind, amount=amount, balance_after=account.balance, **fields
    )
    if kind in WATCHED_KINDS:
        _crossing_record(account, before)
    return entry


# The movements whose fall under a threshold is a crossing (billing.alerts): spending and expiry.
# Not a refund's or a dispute's reversal, nor an operator's claw-back: an auto top-up must not
# buy again for a payment the user took back.
WATCHED_KINDS = (LedgerKind.CHARGE, LedgerKind.EXPIRE)


def _crossing_record(account: CreditAccount, before: int) -> None:
    """Record the crossing, if the movement just written (from `before` to the account's balance)
    is one, and hand it to the housekeeping queue after the commit. Two comparisons of the locked
    row when the account watches a threshold, none when it watches none."""
    topup, alert = account.auto_topup_threshold, account.low_balance_threshold
    if topup is None and alert is None:
        return
    after = account.balance
    topup = topup if crossed(topup, before=before, after=after) else None
    alert = alert if crossed(alert, before=before, after=after) else None
    if topup is None and alert is None:
        return
    BalanceCrossing.objects.create(
        account=account, balance_before=before, balance_after=after, topup_threshold=topup, alert_threshold=alert
    )
    transaction.on_commit(lambda: balance_crossings_enqueue(account_id=account.pk))


def _expire(account: CreditAccount, due: list[CreditGrant], now: datetime) -> int:
    expired = 0
    for grant in due:
        ledger_record(account, kind=LedgerKind.EXPIRE, amount=-grant.remaining, grant=grant, memo="credits expired")
        expired += grant.remaining
        CreditGrant.objects.filter(pk=grant.pk).update(remaining=0, expired_at=now)
    return expired


def expire_due(account: CreditAccount, now: datetime) -> int:
    return _expire(account, list(grants_due_lock(account, now)), now)


def _draw_plan(grants: list[CreditGrant], amount: int) -> list[tuple[CreditGrant, int]]:
    """What to take from spendable grants (in spending order) to make `amount`: (grant, taken)
    pairs; InsufficientCredits when they hold less. Nothing is written."""
    draws, left = [], amount
    for grant in grants:
        take = min(left, grant.remaining)
        draws.append((grant, take))
        left -= take
        if left == 0:
            return draws
    raise InsufficientCredits(f"Not enough credits: {amount} needed, {amount - left} available")


def draws_apply(draws: list[tuple[CreditGrant, int]]) -> None:
    for grant, take in draws:
        CreditGrant.objects.filter(pk=grant.pk).update(remaining=grant.remaining - take)


def lock_and_draw(account: CreditAccount, amount: int, shortfall: Callable[[int], str]) -> tuple[CreditAccount, list]:
    """Lock, expire what is due, then plan drawing `amount` (the caller writes it) or raise
    InsufficientCredits (nothing moved).

    The account's unspent grants are read and locked in one query; those past their expiry
    are expired first, the rest are spent soonest-expiring first (the lock order is the
    spending order)."""
    now = timezone.now()
    account, grants = account_and_grants_lock(account)
    due = [grant for grant in grants if grant.expires_at is not None and grant.expires_at <= now]
    _expire(account, due, now)
    if account.balance < amount:
        raise InsufficientCredits(shortfall(account.balance))
    return account, _draw_plan([grant for grant in grants if grant not in due], amount)


@transaction.atomic
def credits_grant(
    *,
    account: CreditAccount,
    amount: int,
    source: str = GrantSource.ADMIN,
    reason: str = "",
    expires_at: datetime | None = None,
    actor=None,
    purchase: Purchase | None = None,
) -> CreditGrant:
    """A grant is paid when it is a purchase's (billing.payments, the only caller that passes
    one), promotional otherwise; the database holds the two together."""
    if amount <= 0:
        raise InvalidRequest("A grant must be a positive number of credits")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidRequest("A grant cannot expire in the past")
    account = account_lock(account)
    grant = CreditGrant.objects.create(
        account=account,
        amount=amount,
        remaining=amount,
        expires_at=expires_at,
        source=source,
        reason=reason,
        granted_by=actor,
        kind=GrantKind.PAID if purchase is not None else GrantKind.PROMOTIONAL,
        purchase=purchase,
    )
    ledger_record(account, kind=LedgerKind.GRANT, amount=amount, grant=grant, actor=actor, memo=reason or source)
    logger.info("granted %s credits to account %s (%s)", amount, account.pk, source)
    return grant


@transaction.atomic
def credits_take_back(*, grant: CreditGrant, amount: int, memo: str) -> int:
    """Take up to `amount` credits back from what is left of one grant — a refunded or disputed
    purchase's — and return how many were taken: never more than the grant still holds (spent
    credits stay spent). Due grants are expired first, so an expired remainder shows as an
    expiry, not as taken back. One `reversal` ledger row when anything was taken."""
    if amount <= 0:
        return 0
    account = account_lock(grant.account)
    expire_due(account, timezone.now())
    grant = grant_lock(grant)
    taken = min(amount, grant.remaining)
    if taken:
        CreditGrant.objects.filter(pk=grant.pk).update(remaining=grant.remaining - taken)
        ledger_record(account, kind=LedgerKind.REVERSAL, amount=-taken, grant=grant, memo=memo)
        logger.info("took back %s credits of grant %s from account %s", taken, grant.pk, account.pk)
    return taken


@transaction.atomic
def credits_clawback(*, account: CreditAccount, amount: int, actor, reason: str) -> LedgerEntry:
    """Operator removes unspent credits (soonest-expiring first)."""
    if amount <= 0:
        raise InvalidRequest("A claw-back must be a positive number of credits")
    if not reason.strip():
        raise InvalidRequest("A reason is required")
    account, draws = lock_and_draw(account, amount, lambda have: f"Only {have} unspent credits can be clawed back")
    draws_apply(draws)
    return ledger_record(account, kind=LedgerKind.ADJUST, amount=-amount, actor=actor, memo=reason)


def credits_expire_due(*, account: CreditAccount) -> int:
    """Expire the account's due grants; a plain read when nothing is due (the common case)."""
    if not CreditGrant.objects.filter(account=account, remaining__gt=0, expires_at__lte=timezone.now()).exists():
        return 0
    with transaction.atomic():
        return expire_due(account_lock(account), timezone.now())


def credits_expire_all_due() -> int:
    """Sweeper: expire every due grant, one account per transaction."""
    now = timezone.now()
    ids = (
        CreditGrant.objects.filter(remaining__gt=0, expires_at__lte=now).values_list("account_id", flat=True).distinct()
    )
    return sum(credits_expire_due(account=CreditAccount(pk=pk)) for pk in sorted(set(ids)))


@transaction.atomic
def credits_grant_bulk(
    *,
    accounts,
    amount: int,
    reason: str,
    actor,
    expires_at: datetime | None = None,
    source: str = GrantSource.ADMIN,
) -> list[CreditGrant]:
    """One grant per account, all or none. Accounts are locked in id order, so two bulk
    grants running at once cannot deadlock."""
    if not reason.strip():
        raise InvalidRequest("A reason is required")
    unique = {account.pk: account for account in accounts}
    return [
        credits_grant(
            account=unique[pk], amount=amount, source=source, reason=reason, expires_at=expires_at, actor=actor
        )
        for pk in sorted(unique)
    ]
