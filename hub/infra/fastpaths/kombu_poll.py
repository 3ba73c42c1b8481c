"""kombu's poll()-based poller for the broker sockets under gevent, instead of select().

Replaces: kombu's choice of poller (`kombu.utils.eventio._get_poller`). Under gevent kombu waits
on its broker sockets with select(), which refuses any file descriptor from 1024 on
(FD_SETSIZE): a generation worker keeps ~1,000 provider connections open, so a broker socket
opened after them — at start, or reconnecting — ends the consumer's loop with "filedescriptor
out of range in select()" and the worker stops taking generations (bench sync-c1000-10s: 962 of
3,000 sync requests timed out). gevent's own poll() is as cooperative and has no such limit;
kombu's poll-based poller is used with it instead. A fix, not a saving: off, kombu's select()
poller is back, with its limit.

One difference is closed off: poll() reports a descriptor closed while registered (POLLNVAL),
kombu's poll-based poller passes that on as an error event, and its Redis channel then reads
the reply of a connection redis-py has already closed — an AttributeError that ends the worker
("Unrecoverable error", tests/deploy/test_cluster.py: the surviving worker died as Redis
restarted). kombu's select() poller drops such a descriptor (`_select._remove_bad`), as epoll,
its poller elsewhere on Linux, does by itself; so does this one. And kombu unregisters a socket
it finds closed (its number -1), which select() shrugs off and gevent's poll() refused with a
ValueError that ended the worker the same way; this one lets it be.
"""

import sys

from hub.infra.fastpaths import FastPath

KOMBU_POLL = FastPath("KOMBU_POLL", "kombu", "5.7.0")


def broker_poll_beyond_fd_1024() -> None:
    """Once, as the Celery app is made (hub.celery): under gevent, kombu polls with poll()."""
    from kombu.utils import eventio
    from kombu.utils.compat import fileno

    gevent_select = sys.modules.get("gevent.select")
    if gevent_select is not None and eventio.xpoll is getattr(gevent_select, "poll", None) and KOMBU_POLL.on():

        class OpenOnlyPoll(eventio._poll):
            """kombu's poll-based poller, without the descriptors closed while registered."""

            def __init__(self):
                super().__init__()
                self._quick_poll = self._poll_open

            def unregister(self, fd):
                """A socket closed before kombu unregisters it has no number left to give (-1):
                gevent's poll() raised ValueError, and that too ended the worker. Its old number
                is dropped by the next poll (POLLNVAL), or re-registered with the socket that
                took it."""
                if fileno(fd) < 0:
                    return fd
                return super().unregister(fd)

            def _poll_open(self, timeout):
                events = self._poller.poll(timeout)
                closed = {fd for fd, event in events if event & eventio.POLLNVAL}
                for fd in closed:
                    self._poller.unregister(fd)
                return [(fd, event) for fd, event in events if fd not in closed]

        eventio._get_poller = lambda: OpenOnlyPoll
