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

import select

import psycopg
from gevent import get_hub, monkey
from gevent.hub import Waiter
from psycopg import waiting

# psycopg's C wait (a plain poll() on the socket), which it uses whenever select is not patched.
_blocking_wait = getattr(waiting, "wait_c", waiting.wait_poll)
# The kernel's poll, for a zero-timeout look at the socket that does not go through the loop
# (not select: it refuses descriptors past 1023, and a worker holds a thousand sockets).
_kernel_poll = monkey.get_original("select", "poll")
_READ, _WRITE = 1, 2  # psycopg's Wait and Ready flags, and libev's READ and WRITE


def _gevent_wait(gen, fileno: int):
    """psycopg's wait protocol on gevent's own event loop: one libev watcher per wait.

    Under gevent psycopg waits by `wait_poll` on gevent's emulation of select.poll, which builds
    a poll object, registers the socket and collects its results in Python on each round trip:
    in py-spy samples of `bench run stages`, wait_poll held a quarter of a request's web CPU, the
    emulation about half of that; bench async-c32, two pairs: 6.4–6.9 s of web CPU per 3,000
    submits against 7.1–7.2 before. The watcher reports which of read and write is ready
    (`pass_events`), which is what psycopg's generator asks (psycopg's Wait and Ready flags are
    libev's READ 1 and WRITE 2). No polling interval: the generator only ever asks to wait for
    the socket again.

    A wait that may write asks the kernel first, with a zero timeout: a pipeline waits for the
    socket to be writable before each statement it sends (psycopg's pipeline_communicate), and a
    socket nearly always is, so each such wait was a full turn of the loop — a watcher, two
    greenlet switches and every other ready request run first — for nothing: ten of an async
    submit's 12.5 waits (BEGIN, the lock, the statement, COMMIT and the sync, two each). A read
    still waits on the loop: its answer is rarely there yet, and the look would be one system
    call more. A socket in error falls through to the loop's watcher, which reports it.
    """
    loop = get_hub().loop
    try:
        wait_for = next(gen)
        while True:
            if wait_for & _WRITE:
                look = _kernel_poll()
                look.register(fileno, select.POLLOUT | (select.POLLIN if wait_for & _READ else 0))
                events = look.poll(0)
                events = events[0][1] if events else 0
                ready = (_READ if events & select.POLLIN else 0) | (_WRITE if events & select.POLLOUT else 0)
                if ready:
                    wait_for = gen.send(ready)
                    continue
            watcher, waiter = loop.io(fileno, wait_for), Waiter()
            watcher.start(waiter.switch, pass_events=True)
            try:
                events = waiter.get()
            finally:
                watcher.stop()
            ready = events & (_READ | _WRITE)
            if not ready:  # libev's error event: the socket was closed under us
                raise psycopg.OperationalError("connection socket closed")
            wait_for = gen.send(ready)
    except StopIteration as done:
        return done.value


class Connection(psycopg.Connection):
    """The pool's connection class (set by HubConfig.ready()): psycopg's, plus hold_the_loop, and
    under gevent (the web and the worker) waits on gevent's loop itself (_gevent_wait)."""

    _holding_loop = False

    def wait(self, gen, interval=0.1, timeout=None):
        if self._holding_loop:
            return _blocking_wait(gen, self.pgconn.socket, interval=interval, timeout=timeout)
        if timeout is None and monkey.is_module_patched("select"):
            return _gevent_wait(gen, self.pgconn.socket)
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
