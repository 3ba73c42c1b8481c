"""The only code that moves credits. Every movement locks the account row (then grants, in
the order `lock_objects` writes down), writes a ledger row and updates the cached balance in
one transaction."""

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing.alerts import balance_crossings_enqueue, crossed
from billing.lock_objects import (
    account_and_grants_lock,
    account_and_grants_lock_ctes,
    account_lock,
    account_lock_then,
    grant_lock,
    grants_due_lock,
)
from billing.models import (
    BalanceCrossing,
    ChargeAllocation,
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
from hub.infra import backends

logger = logging.getLogger(__name__)

# The common charge is one statement (credits_charge_ctes) where the database writes in common
# table expressions (hub.infra.backends); elsewhere, for the rest, and with this off, the ORM
# writes the same rows (tests/billing/test_charge_paths.py turns it off to hold the two to that).
ONE_STATEMENT_CHARGE = True


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
    the charge under it (a generation's precheck), not for a balance to show after a charge."""
    account = type(user).credit_account.related.get_cached_value(user, default=None)
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


def _record(account: CreditAccount, *, kind: str, amount: int, **fields) -> LedgerEntry:
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
        _record(account, kind=LedgerKind.EXPIRE, amount=-grant.remaining, grant=grant, memo="credits expired")
        expired += grant.remaining
        CreditGrant.objects.filter(pk=grant.pk).update(remaining=0, expired_at=now)
    return expired


def _expire_due(account: CreditAccount, now: datetime) -> int:
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


def _draws_apply(draws: list[tuple[CreditGrant, int]]) -> None:
    for grant, take in draws:
        CreditGrant.objects.filter(pk=grant.pk).update(remaining=grant.remaining - take)


def _lock_and_draw(account: CreditAccount, amount: int, shortfall: Callable[[int], str]) -> tuple[CreditAccount, list]:
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
    _record(account, kind=LedgerKind.GRANT, amount=amount, grant=grant, actor=actor, memo=reason or source)
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
    _expire_due(account, timezone.now())
    grant = grant_lock(grant)
    taken = min(amount, grant.remaining)
    if taken:
        CreditGrant.objects.filter(pk=grant.pk).update(remaining=grant.remaining - taken)
        _record(account, kind=LedgerKind.REVERSAL, amount=-taken, grant=grant, memo=memo)
        logger.info("took back %s credits of grant %s from account %s", taken, grant.pk, account.pk)
    return taken


def credits_charge(
    *, account: CreditAccount, amount: int, generation_id: str, memo: str = "", savepoint: bool = True
) -> LedgerEntry:
    """Charge a generation up front; raises InsufficientCredits and changes nothing if short.

    On PostgreSQL the common charge is one statement (credits_charge_ctes); a charge it leaves
    alone (grants due to expire, a shortfall) takes the row-by-row path, which expires them or
    refuses. `savepoint=False` for a caller whose whole transaction fails with the charge: two
    round trips fewer while the account row is locked, which is what serializes one account's
    concurrent charges.
    """
    if amount <= 0:
        raise InvalidRequest("A charge must be a positive number of credits")
    with transaction.atomic(savepoint=savepoint):
        if ONE_STATEMENT_CHARGE and backends.dml_in_cte():
            now = timezone.now()
            ctes, params = credits_charge_ctes(
                account_id=account.pk, amount=amount, generation_id=generation_id, memo=memo, now=now
            )
            sql = f"WITH {ctes} SELECT balance_after, (SELECT id FROM charge_entry), {CROSSED} {CHARGED}"
            charged = account_lock_then(account.pk, sql, params)
            if charged is not None:
                balance_after, entry_id, crossing = charged
                if crossing:
                    transaction.on_commit(lambda: balance_crossings_enqueue(account_id=account.pk))
                return LedgerEntry(
                    pk=entry_id,
                    account_id=account.pk,
                    kind=LedgerKind.CHARGE,
                    amount=-amount,
                    balance_after=balance_after,
                    generation_id=generation_id,
                    memo=memo,
                    created_at=now,
                )
        account, draws = _lock_and_draw(
            account, amount, lambda have: f"Not enough credits: {amount} needed, {have} available"
        )
        _draws_apply(draws)
        entry = _record(account, kind=LedgerKind.CHARGE, amount=-amount, generation_id=generation_id, memo=memo)
        ChargeAllocation.objects.bulk_create(ChargeAllocation(entry=entry, grant=g, amount=a) for g, a in draws)
        return entry


# The condition a statement's own writes take beside credits_charge_ctes' (`… WHERE {CHARGED}`),
# and the FROM of its answer (`SELECT balance_after {CHARGED}`: no row when nothing was charged).
CHARGED = "FROM charge_ok WHERE charge_ok.ok"
# In that answer: whether the charge crossed a threshold (it wrote a BalanceCrossing).
CROSSED = "EXISTS (SELECT 1 FROM charge_crossing)"


def credits_charge_ctes(
    *, account_id: int, amount: int, generation_id: str, memo: str, now: datetime
) -> tuple[str, list]:
    """The common charge as common table expressions of one PostgreSQL statement, run under
    lock_objects.account_lock_then: the account and its grants locked, the grants drawn in
    spending order, the cached balance, the ledger row and its allocations — the rows the
    row-by-row path writes. A caller adds its own writes under CHARGED (generations: the
    generation's row and the key's usage), so that they and the charge commit together or not
    at all.

    Why: the account row stays locked until the commit and every charge of the account queues
    behind it. Row by row, a charge was five statements (the locks, the writes, the usage), each
    a round trip with the driver's and Django's work around it.

    It charges only what the row-by-row path would charge the same way, else writes nothing
    (`charge_ok` is false): a grant due to expire (the row-by-row path expires it first, in the
    ledger), a balance short of `amount` (refused there), or grants that do not add up to the
    cached balance (drift, which the row-by-row path and hub_reconcile report). The table
    constraints check every row as they do for the ORM's writes.

    A charge that takes the balance from a threshold of the account or above to under it also
    writes its BalanceCrossing (`charge_crossing`, as _record does row by row): compared on the
    locked row, so nothing is written when it crosses none."""
    locks, params = account_and_grants_lock_ctes(account_id)
    sql = f"""{locks},
        charge_ok AS MATERIALIZED (
            SELECT balance >= %s
                AND balance = (SELECT coalesce(sum(remaining), 0) FROM locked_grants)
                AND NOT EXISTS (SELECT 1 FROM locked_grants WHERE expires_at <= %s) AS ok,
                balance - %s AS balance_after
            FROM locked_account
        ),
        charge_drawn AS MATERIALIZED (
            SELECT id, least(remaining, %s - drawn_before)::integer AS amount FROM (
                SELECT id, remaining, coalesce(sum(remaining) OVER (
                    ORDER BY expires_at ASC NULLS LAST, created_at ASC, id ASC
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
                ), 0) AS drawn_before
                FROM locked_grants
            ) AS spending
            WHERE drawn_before < %s AND (SELECT ok FROM charge_ok)
        ),
        charge_grants AS (
            UPDATE billing_creditgrant AS g SET remaining = g.remaining - charge_drawn.amount
            FROM charge_drawn WHERE g.id = charge_drawn.id
        ),
        charge_account AS (
            UPDATE billing_creditaccount SET balance = charge_ok.balance_after, updated_at = %s
            {CHARGED} AND billing_creditaccount.id = %s
        ),
        charge_entry AS (
            INSERT INTO billing_ledgerentry
                (account_id, kind, amount, balance_after, generation_id, grant_id, actor_id, memo, created_at)
            SELECT %s, %s, %s, balance_after, %s, NULL, NULL, %s, %s {CHARGED}
            RETURNING id
        ),
        charge_allocations AS (
            INSERT INTO billing_chargeallocation (entry_id, grant_id, amount)
            SELECT charge_entry.id, charge_drawn.id, charge_drawn.amount FROM charge_entry, charge_drawn
        ),
        charge_crossing AS (
            INSERT INTO billing_balancecrossing
                (account_id, balance_before, balance_after, topup_threshold, alert_threshold, created_at)
            SELECT id, balance, balance_after, topup, alert, %s FROM (
                SELECT locked_account.id, balance, balance_after,
                    CASE WHEN {_crossed_sql("auto_topup_threshold")} THEN auto_topup_threshold END AS topup,
                    CASE WHEN {_crossed_sql("low_balance_threshold")} THEN low_balance_threshold END AS alert
                FROM locked_account, charge_ok WHERE charge_ok.ok
            ) AS crossing
            WHERE topup IS NOT NULL OR alert IS NOT NULL
            RETURNING id
        )"""
    params += [amount, now, amount, amount, amount, now, account_id]
    params += [account_id, LedgerKind.CHARGE, -amount, generation_id, memo, now]
    params += [now]
    return sql, params


def _crossed_sql(threshold: str) -> str:
    """billing.alerts.crossed in SQL, on charge_crossing's columns (not true when the threshold is null)."""
    return f"(balance >= {threshold} AND balance_after < {threshold})"


@transaction.atomic
def credits_refund(*, account: CreditAccount, generation_id: str, amount: int, memo: str = "") -> LedgerEntry | None:
    """Return `amount` of a generation's charge to the grants it came from — at most once.

    A second call for the same generation returns the first refund and moves nothing.
    """
    if amount <= 0:
        return None
    account = account_lock(account)
    existing = LedgerEntry.objects.filter(account=account, generation_id=generation_id, kind=LedgerKind.REFUND).first()
    if existing is not None:
        return existing
    charge = LedgerEntry.objects.get(account=account, generation_id=generation_id, kind=LedgerKind.CHARGE)
    if amount > -charge.amount:
        raise ValueError(f"refund {amount} exceeds charge {-charge.amount} of {generation_id}")
    left = amount
    # Latest-expiring grants first, so refunded credits live as long as possible.
    allocations = charge.allocations.select_related("grant").order_by(
        F("grant__expires_at").desc(nulls_first=True), "-grant__pk"
    )
    for allocation in allocations:
        back = min(left, allocation.amount)
        CreditGrant.objects.filter(pk=allocation.grant_id).update(remaining=F("remaining") + back)
        left -= back
        if left == 0:
            break
    entry = _record(account, kind=LedgerKind.REFUND, amount=amount, generation_id=generation_id, memo=memo)
    # A refund into a grant that expired meanwhile expires at once, visibly in the ledger.
    _expire_due(account, timezone.now())
    return entry


@transaction.atomic
def credits_clawback(*, account: CreditAccount, amount: int, actor, reason: str) -> LedgerEntry:
    """Operator removes unspent credits (soonest-expiring first)."""
    if amount <= 0:
        raise InvalidRequest("A claw-back must be a positive number of credits")
    if not reason.strip():
        raise InvalidRequest("A reason is required")
    account, draws = _lock_and_draw(account, amount, lambda have: f"Only {have} unspent credits can be clawed back")
    _draws_apply(draws)
    return _record(account, kind=LedgerKind.ADJUST, amount=-amount, actor=actor, memo=reason)


def credits_expire_due(*, account: CreditAccount) -> int:
    """Expire the account's due grants; a plain read when nothing is due (the common case)."""
    if not CreditGrant.objects.filter(account=account, remaining__gt=0, expires_at__lte=timezone.now()).exists():
        return 0
    with transaction.atomic():
        return _expire_due(account_lock(account), timezone.now())


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
