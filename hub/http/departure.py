"""Whether the client of a waiting request has hung up, noticed at once.

A sync request waiting for its generation, or an event stream between two events, writes
nothing to its client for seconds or minutes: a client that leaves meanwhile would be noticed
only by the next write (the answer, or a keep-alive up to 10 s later), and its waiter, its
registration and its place in the waits-in-flight gauge would stay until then — 200 clients
that leave at once, 200 waits that count on. Under gunicorn's gevent worker (deploy/bin/web)
the request's socket is in the environ (`gunicorn.socket`): while a request waits, its socket is
watched for readability, and a read that peeks at end-of-file (or fails) means the client hung
up — nginx, on a client's hang-up, closes its connection to the web the same way. Bytes to read
mean a pipelined request: the client is there, the watch ends. Elsewhere (Django's test client,
a server without gevent) nothing is watched and waits run to their end.

The generation is not touched: it was charged and goes on; the client retrieves it later (GET,
its webhook, the same Idempotency-Key).
"""

import socket
import threading
from contextlib import contextmanager


class ClientLeft(Exception):
    """The client hung up while its request waited."""


class Departure:
    """The client's hang-up, for one request. `watching(event)` sets `left` and the event
    (the waiter's own: it wakes) when the client hangs up during the block."""

    def __init__(self, sock: socket.socket | None = None):
        self._sock = sock
        self.left = False

    @contextmanager
    def watching(self, event: threading.Event):
        if self._sock is None:
            yield
            return
        from gevent import get_hub

        # A readability watcher on the loop itself, its callback run by the loop: no greenlet per
        # wait to spawn, switch to and kill (gevent.spawn of a wait_read was ~2 % of a sync
        # request's web CPU in py-spy samples of bench sync-c32-0s).
        watcher = get_hub().loop.io(self._sock.fileno(), 1)  # 1: libev's (and libuv's) READ
        watcher.start(self._readable, watcher, event)
        try:
            yield
        finally:
            watcher.stop()
            watcher.close()

    def _readable(self, watcher, event: threading.Event) -> None:
        """The socket is readable: a peek tells a hang-up (end-of-file, or a reset) from bytes
        of a pipelined request (the client is there: the watch ends). Run by the event loop,
        where nothing may wait; readable, the peek does not."""
        watcher.stop()
        try:
            if self._sock.recv(1, socket.MSG_PEEK):
                return
        except ValueError:  # a TLS socket does not peek: cannot tell
            return
        except OSError:  # reset by the peer
            pass
        except Exception:  # noqa: BLE001 — cannot tell (a peek that would wait, here): assume the client is there
            return
        self.left = True
        event.set()


# A client whose leaving is not watched (no gevent, no socket): its waits run to their end.
UNWATCHED = Departure()


def departure_of(request) -> Departure:
    """The hang-up watch for a Django (or DRF) request: a watched one under gunicorn's gevent
    worker, else UNWATCHED."""
    sock = request.META.get("gunicorn.socket")
    if sock is None or not _gevent_patched():
        return UNWATCHED
    return Departure(sock)


def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket")
