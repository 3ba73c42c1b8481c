"""A generation's credits: the charge made up front (one PostgreSQL statement where it can be,
row by row through the ledger otherwise) and the refund of what it did not deliver."""

from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing.alerts import balance_crossings_enqueue
from billing.lock_objects import account_and_grants_lock_ctes, account_lock, account_lock_then
from billing.models import ChargeAllocation, CreditAccount, CreditGrant, LedgerEntry, LedgerKind
from billing.services.ledger import draws_apply, expire_due, ledger_record, lock_and_draw
from hub.http.errors import InvalidRequest
from hub.infra import backends

# The common charge is one statement (credits_charge_ctes) where the database writes in common
# table expressions (hub.infra.backends); elsewhere, for the rest, and with this off, the ORM
# writes the same rows (tests/billing/test_charge_paths.py turns it off to hold the two to that).
ONE_STATEMENT_CHARGE = True


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
        account, draws = lock_and_draw(
            account, amount, lambda have: f"Not enough credits: {amount} needed, {have} available"
        )
        draws_apply(draws)
        entry = ledger_record(account, kind=LedgerKind.CHARGE, amount=-amount, generation_id=generation_id, memo=memo)
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
    locked row, so nothing is written when it crosses none.

    The amount and the time are parameters once (`charge_ok` carries them on, with the account's
    id), and the text is one line: a caller's statement with its own writes (a generation's row,
    its event, its key's usage) stays within psycopg's cache of parsed queries (4,096 bytes, 50
    parameters; tests/generations/test_create_paths.py). Past either, psycopg parsed the 4.4 KB
    statement again on every submit (bench async-c32, py-spy: ~2.5 % of the web's samples)."""
    locks, params = account_and_grants_lock_ctes(account_id)
    return f"{locks}, {_CHARGE_CTES}", [*params, amount, now, LedgerKind.CHARGE, generation_id, memo]


def _crossed_sql(threshold: str) -> str:
    """billing.alerts.crossed in SQL, on charge_crossing's columns (not true when the threshold is null)."""
    return f"(balance >= {threshold} AND balance_after < {threshold})"


# credits_charge_ctes' own common table expressions, after the locks: with the amount and the
# time as its only parameters, and on one line.
_CHARGE_CTES = " ".join(
    f"""
    charge_ok AS MATERIALIZED (
        SELECT id AS account_id, balance >= args.amount
            AND balance = (SELECT coalesce(sum(remaining), 0) FROM locked_grants)
            AND NOT EXISTS (SELECT 1 FROM locked_grants WHERE expires_at <= args.charged_at) AS ok,
            balance - args.amount AS balance_after, args.amount, args.charged_at
        FROM locked_account, (SELECT %s::integer AS amount, %s::timestamptz AS charged_at) AS args
    ),
    charge_drawn AS MATERIALIZED (
        SELECT id, least(remaining, (SELECT amount FROM charge_ok) - drawn_before)::integer AS amount FROM (
            SELECT id, remaining, coalesce(sum(remaining) OVER (
                ORDER BY expires_at NULLS LAST, created_at, id
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
            ), 0) AS drawn_before
            FROM locked_grants
        ) AS spending
        WHERE drawn_before < (SELECT amount FROM charge_ok) AND (SELECT ok FROM charge_ok)
    ),
    charge_grants AS (
        UPDATE billing_creditgrant AS g SET remaining = g.remaining - charge_drawn.amount
        FROM charge_drawn WHERE g.id = charge_drawn.id
    ),
    charge_account AS (
        UPDATE billing_creditaccount SET balance = charge_ok.balance_after, updated_at = charge_ok.charged_at
        {CHARGED} AND billing_creditaccount.id = charge_ok.account_id
    ),
    charge_entry AS (
        INSERT INTO billing_ledgerentry
            (account_id, kind, amount, balance_after, generation_id, grant_id, actor_id, memo, created_at)
        SELECT account_id, %s, -amount, balance_after, %s, NULL, NULL, %s, charged_at {CHARGED}
        RETURNING id
    ),
    charge_allocations AS (
        INSERT INTO billing_chargeallocation (entry_id, grant_id, amount)
        SELECT charge_entry.id, charge_drawn.id, charge_drawn.amount FROM charge_entry, charge_drawn
    ),
    charge_crossing AS (
        INSERT INTO billing_balancecrossing
            (account_id, balance_before, balance_after, topup_threshold, alert_threshold, created_at)
        SELECT id, balance, balance_after, topup, alert, charged_at FROM (
            SELECT locked_account.id, balance, balance_after, charged_at,
                CASE WHEN {_crossed_sql("auto_topup_threshold")} THEN auto_topup_threshold END AS topup,
                CASE WHEN {_crossed_sql("low_balance_threshold")} THEN low_balance_threshold END AS alert
            FROM locked_account, charge_ok WHERE charge_ok.ok
        ) AS crossing
        WHERE topup IS NOT NULL OR alert IS NOT NULL
        RETURNING id
    )""".split()
)


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
    entry = ledger_record(account, kind=LedgerKind.REFUND, amount=amount, generation_id=generation_id, memo=memo)
    # A refund into a grant that expired meanwhile expires at once, visibly in the ledger.
    expire_due(account, timezone.now())
    return entry
