"""PostgreSQL connections that can keep the event loop while a transaction holds a hot row lock.

Under gevent (the web and the generation worker) every database round trip is a turn of the
event loop: while one request waits for PostgreSQL's answer, the process runs the other ready
requests, each for up to a millisecond or so. That is what makes a thousand waits cheap — and
what makes a contended row lock expensive: a charge holds its account's row lock across three
round trips (the writes, the usage counter, COMMIT), and if each of them costs the holder a
turn of a busy loop, the lock is held for milliseconds and every other charge of the account
queues behind it (bench async-c32: 8 of 20 backends waiting on it, throughput bound by the lock,
not the CPU).

`hold_the_loop(connection)` makes the connection's round trips block the process, not yield,
until its transaction ends (its ROLLBACK, or its COMMIT, whose own round trip yields again:
Connection.commit). billing.lock_objects calls it before taking an account lock, so from the
lock request to the commit the charge never yields: the lock is held
for the database's own few hundred microseconds. That is safe only because *every* account lock
is taken this way (the lock helpers are the only way to take one, and every write to an account
row goes through them): a process then never has one request blocked on a lock that another
request of the same process holds while parked — the holder would never run again. A request
blocked here waits only for a holder in another process, which does not yield either. The one
lock taken without it, billing.lock_objects.account_lock_then outside a transaction, is held by
no client at all: BEGIN, the lock, the write and COMMIT reach the server together (a pipeline),
which releases the lock at the COMMIT whether the process runs the request again or not.
"""

import psycopg
from gevent import monkey
from psycopg import waiting

from hub.infra.fastpaths.pg_wait import PG_WAIT, gevent_wait

# psycopg's C wait (a plain poll() on the socket), which it uses whenever select is not patched.
_blocking_wait = getattr(waiting, "wait_c", waiting.wait_poll)


class Connection(psycopg.Connection):
    """The pool's connection class (set by HubConfig.ready()): psycopg's, plus hold_the_loop, and
    under gevent (the web and the worker) waits on gevent's loop itself (hub.infra.fastpaths.pg_wait)."""

    _holding_loop = False

    def wait(self, gen, interval=0.1, timeout=None):
        if self._holding_loop:
            return _blocking_wait(gen, self.pgconn.socket, interval=interval, timeout=timeout)
        if timeout is None and monkey.is_module_patched("select") and PG_WAIT.on():
            return gevent_wait(gen, self.pgconn.socket)
        return super().wait(gen, interval=interval, timeout=timeout)

    def commit(self) -> None:
        # The COMMIT's own round trip (its WAL flush, the longest of the transaction) yields: the
        # server releases the locks when the commit is durable, whether this process runs or not,
        # so a request of this process that blocks on the lock meanwhile waits only for PostgreSQL.
        self._holding_loop = False
        super().commit()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._holding_loop = False


def hold_the_loop(connection) -> None:
    """Until the current transaction of Django `connection` ends, its round trips block (see the
    module's docstring). A no-op on other databases and connection classes."""
    raw = connection.connection
    if isinstance(raw, Connection) and connection.in_atomic_block:  # only a transaction ends it
        raw._holding_loop = True
