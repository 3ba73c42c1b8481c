"""A charge holds its account lock without yielding (hub.db): the connection's round trips block
from the lock request until the transaction ends, and only until then — a flag left on would
make every later request of the process block on the database. The COMMIT itself yields."""

import pytest
from django.db import connection, transaction

from billing.lock_objects import account_and_grants_lock, account_lock
from billing.services import account_get_or_create, credits_charge, credits_grant
from hub import db
from tests.factories import make_user

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the pool and its connection class are PostgreSQL's"),
]


def _holding() -> bool:
    return connection.connection._holding_loop


def test_the_pool_hands_out_connections_that_can_hold_the_loop():
    connection.ensure_connection()
    assert isinstance(connection.connection, db.Connection)


@pytest.mark.parametrize("lock", [account_lock, lambda account: account_and_grants_lock(account)[0]])
def test_from_the_account_lock_to_the_commit_or_rollback(lock):
    account = account_get_or_create(user=make_user())
    with transaction.atomic():
        assert lock(account).pk == account.pk
        assert _holding()
    assert not _holding()
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        lock(account)
        assert _holding()
        raise ZeroDivisionError
    assert not _holding()


def test_a_charge_leaves_the_connection_cooperative_once_it_commits():
    account = account_get_or_create(user=make_user())
    credits_grant(account=account, amount=10)
    assert not _holding()
    with transaction.atomic():
        credits_charge(account=account, amount=3, generation_id="gen_hold")
    assert not _holding()
    db.hold_the_loop(connection)  # outside a transaction: nothing would end it, so it is refused
    assert not _holding()


def test_the_commit_round_trip_yields(monkeypatch):
    """The lock and the writes under it block the process; the COMMIT (the WAL flush) lets it run
    other requests — PostgreSQL releases the lock when the commit is durable, without this process."""
    account = account_get_or_create(user=make_user())
    credits_grant(account=account, amount=10)
    waits = []
    blocking, cooperative = db._blocking_wait, db.psycopg.Connection.wait
    monkeypatch.setattr(db, "_blocking_wait", lambda *a, **kw: waits.append("blocking") or blocking(*a, **kw))
    commit = db.psycopg.Connection.commit
    monkeypatch.setattr(
        db.psycopg.Connection, "wait", lambda self, *a, **kw: waits.append("cooperative") or cooperative(self, *a, **kw)
    )
    monkeypatch.setattr(db.psycopg.Connection, "commit", lambda self: waits.append("COMMIT") or commit(self))
    with transaction.atomic():
        credits_charge(account=account, amount=3, generation_id="gen_commit")
    assert waits.count("COMMIT") == 1, waits
    under_lock, at_commit = waits[: waits.index("COMMIT")], waits[waits.index("COMMIT") + 1]
    assert "blocking" in under_lock  # the lock and the writes
    assert at_commit == "cooperative", waits  # the COMMIT's round trip
    assert not _holding()


def test_a_failed_statement_under_the_lock_leaves_no_transaction_open():
    """Outside a transaction account_lock_then sends BEGIN … COMMIT itself: a statement that fails
    there must not leave the pooled connection inside an aborted transaction, nor the lock held."""
    from django.db import DataError
    from psycopg.pq import TransactionStatus

    from billing.lock_objects import account_lock_then

    account = account_get_or_create(user=make_user())
    with pytest.raises(DataError):
        account_lock_then(account.pk, "SELECT 1 / 0", [])
    assert connection.connection.info.transaction_status == TransactionStatus.IDLE
    assert account_lock_then(account.pk, "SELECT %s", [7]) == (7,)
    assert connection.connection.info.transaction_status == TransactionStatus.IDLE
    assert not _holding()
