"""psycopg's waits on gevent's event loop itself: one libev watcher per wait.

Replaces: psycopg's choice of wait function (`Connection.wait`, which under gevent is
`waiting.wait_poll` on gevent's emulation of select.poll), by hub.db.Connection. Off, psycopg
waits its own way (HUB_FAST_PATH_PG_WAIT).
"""

import select

import psycopg
from gevent import get_hub, monkey
from gevent.hub import Waiter

from hub.infra.fastpaths import FastPath

PG_WAIT = FastPath("PG_WAIT", "psycopg", "3.3.9")

# The kernel's poll, for a zero-timeout look at the socket that does not go through the loop
# (not select: it refuses descriptors past 1023, and a worker holds a thousand sockets).
_kernel_poll = monkey.get_original("select", "poll")
_READ, _WRITE = 1, 2  # psycopg's Wait and Ready flags, and libev's READ and WRITE


def gevent_wait(gen, fileno: int):
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
