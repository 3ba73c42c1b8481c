"""Row locks for moving credits, taken through these helpers only (after saleor's
`lock_objects.py`), always in one order:

0. a purchase row (`Purchase`; billing.payments, applying a Stripe event), before its account —
   the only row ever locked before an account;
1. the account row (`CreditAccount`), before any credit row and always;
2. then that account's grants, in expiry order: soonest-expiring first, never-expiring last,
   ties by creation time and id.

The account lock serializes every credit movement of one account, so two movements of the
same account never interleave; locking grants in one fixed order after it keeps any code that
takes grant locks without it (none today) from deadlocking against the movements. Movements of
several accounts (bulk grants) lock the accounts in id order.

From the account lock request to the commit, the connection does not yield to other requests
of the process (hub.db.hold_the_loop): the lock is held for microseconds, not for turns of a
busy event loop — and, since every account lock is taken here, no request can be parked while
holding one that another request of its process waits for.
"""

from datetime import datetime

from django.db import connection, transaction
from django.db.models import F, QuerySet

from billing.models import CreditAccount, CreditGrant, Purchase
from hub.compiled import INT_MARKER, CompiledQuery
from hub.db import hold_the_loop
from hub.infra import backends
from hub.infra.fastpaths.orm_rows import ORM_ROWS

GRANT_LOCK_ORDER = (F("expires_at").asc(nulls_last=True), "created_at", "pk")


def account_lock(account: CreditAccount) -> CreditAccount:
    """Lock and re-read the account row; call inside a transaction."""
    hold_the_loop(connection)
    return CreditAccount.objects.select_for_update().get(pk=account.pk)


def purchase_lock(**lookup) -> Purchase | None:
    """Lock and read the purchase `lookup` finds (pk=…, stripe_payment_intent_id=…), or None,
    before its account: the Stripe events of one purchase apply one at a time. Like the account
    lock, the connection holds the event loop from here to the commit, so no request of the
    process is parked holding it."""
    hold_the_loop(connection)
    return Purchase.objects.select_for_update().filter(**lookup).first()


def grant_lock(grant: CreditGrant) -> CreditGrant:
    """Lock and re-read one grant, after its account (taking back a purchase's credits)."""
    return CreditGrant.objects.select_for_update().get(pk=grant.pk)


def grants_due_lock(account: CreditAccount, now: datetime) -> QuerySet[CreditGrant]:
    """The account's unspent grants that have expired by `now`, locked in expiry order."""
    due = CreditGrant.objects.filter(account=account, remaining__gt=0, expires_at__lte=now)
    return due.select_for_update().order_by(*GRANT_LOCK_ORDER)


def grants_unspent_lock(account: CreditAccount) -> QuerySet[CreditGrant]:
    """All the account's grants with credits left — expired or not — locked in expiry order,
    which is also the order they are spent in."""
    unspent = CreditGrant.objects.filter(account=account, remaining__gt=0)
    return unspent.select_for_update().order_by(*GRANT_LOCK_ORDER)


def account_and_grants_lock(account: CreditAccount) -> tuple[CreditAccount, list[CreditGrant]]:
    """account_lock, then grants_unspent_lock: the same two statements in the same order (the
    account row first), sent in one round trip on PostgreSQL. Why: the account lock queues
    every charge of the account behind it, so each round trip taken while holding it counts.
    Pipelined rather than joined into one multi-statement string: a prepared statement
    (hub.settings, DATABASE_PREPARED_STATEMENTS) holds one statement."""
    hold_the_loop(connection)
    # psycopg's pipeline mode: the two locks in one round trip; the fast path off, Django reads
    # only the statements it sends itself
    if not backends.pipelined() or not ORM_ROWS.on():
        return account_lock(account), list(grants_unspent_lock(account))
    account_sql, account_params = _ACCOUNT_LOCK.sql_params(account.pk)
    grants_sql, grants_params = _GRANTS_LOCK.sql_params(account.pk)
    with connection.cursor() as first, connection.cursor() as then, connection.connection.pipeline():
        first.execute(account_sql, account_params)
        then.execute(grants_sql, grants_params)
        locked = _ACCOUNT_LOCK.instances(first.fetchall())
        grant_rows = _GRANTS_LOCK.instances(then.fetchall())
    if not locked:
        raise CreditAccount.DoesNotExist(f"no credit account {account.pk}")
    return locked[0], grant_rows


def account_lock_then(account_id: int, sql: str, params: list) -> tuple | None:
    """Lock the account row, then run `sql` (which writes what the lock guards) and return its
    first row — in a transaction of their own when called outside one. The lock is its own
    statement so that `sql` starts after it is granted: its snapshot then holds every movement
    committed by earlier holders of the lock (a statement's rows locked by a FOR UPDATE of its
    own are re-read at their latest versions, but its other reads are as old as the statement —
    tests/billing/test_races.py found a charge drawing a grant below zero that way).

    On PostgreSQL the statements are pipelined: BEGIN, the lock, `sql` and COMMIT in one round
    trip outside a transaction, so the lock is held only for the server's own time and the
    process need not keep the event loop (hub.db); inside a transaction (a caller's), the lock and
    `sql` in one round trip, holding the loop until that transaction ends."""
    lock_sql = "SELECT 1 FROM billing_creditaccount WHERE id = %s FOR UPDATE"
    own = not connection.in_atomic_block
    if not own:  # a caller's transaction outlives the round trip (outside one: hub.db)
        hold_the_loop(connection)
    with connection.cursor() as cursor:
        if not backends.pipelined():  # psycopg's pipeline mode: the two locks in one round trip
            with transaction.atomic():
                cursor.execute(lock_sql, [account_id])
                cursor.execute(sql, params)
                return cursor.fetchone()
        # BEGIN, the lock and COMMIT on the driver's own cursor: Django's cursor wrapper around
        # each (its execute wrappers, the query log) was ~0.5 of the ~3 ms of web CPU a submit
        # cost (bench async-c32, yappi); `sql`, the one that writes, stays on Django's.
        raw = connection.connection.cursor()
        try:
            # The statements' errors surface when the pipeline syncs, past Django's cursor:
            # mapped here to Django's exceptions (IntegrityError …) as its cursor maps them.
            with connection.wrap_database_errors, connection.connection.pipeline():
                if own:
                    raw.execute("BEGIN")
                raw.execute(lock_sql, [account_id])
                cursor.execute(sql, params)
                if own:
                    raw.execute("COMMIT")
        except Exception:
            if own:
                raw.execute("ROLLBACK")  # a failed statement left the transaction open
            raise
        finally:
            raw.close()
        return cursor.fetchone()


def account_and_grants_lock_ctes(account_id: int) -> tuple[str, list]:
    """account_and_grants_lock as two common table expressions, for a statement that goes on to
    write with what they locked: `locked_account` (id, balance and the two thresholds a falling
    balance is watched against) and `locked_grants` (id,
    remaining, expires_at, created_at; all the account's grants with credits left, in spending
    order). The grants' scan takes the account's id from `locked_account`, so the account row is
    locked first, as everywhere else. Run under account_lock_then: the account row is already
    this transaction's, so the statement's snapshot is newer than every movement before it."""
    return _LOCK_CTES, [account_id]


# account_and_grants_lock_ctes' text, on one line (a statement's length counts: see
# billing.services.charges.credits_charge_ctes).
_LOCK_CTES = " ".join(
    """
    locked_account AS MATERIALIZED (
        SELECT id, balance, auto_topup_threshold, low_balance_threshold
        FROM billing_creditaccount WHERE id = %s FOR UPDATE
    ),
    locked_grants AS MATERIALIZED (
        SELECT id, remaining, expires_at, created_at FROM billing_creditgrant
        WHERE account_id = (SELECT id FROM locked_account) AND remaining > 0
        ORDER BY expires_at NULLS LAST, created_at, id
        FOR UPDATE
    )""".split()
)


# The two locks' SQL, compiled once (hub.compiled): every charge runs them.
_ACCOUNT_LOCK = CompiledQuery(lambda pk: CreditAccount.objects.select_for_update().filter(pk=pk), INT_MARKER)
_GRANTS_LOCK = CompiledQuery(lambda pk: grants_unspent_lock(CreditAccount(pk=pk)), INT_MARKER)
