"""kombu's poll()-based poller for the broker sockets under gevent, instead of select().

Replaces: kombu's choice of poller (`kombu.utils.eventio._get_poller`). Under gevent kombu waits
on its broker sockets with select(), which refuses any file descriptor from 1024 on
(FD_SETSIZE): a generation worker keeps ~1,000 provider connections open, so a broker socket
opened after them — at start, or reconnecting — ends the consumer's loop with "filedescriptor
out of range in select()" and the worker stops taking generations (bench sync-c1000-10s: 962 of
3,000 sync requests timed out). gevent's own poll() is as cooperative and has no such limit;
kombu's poll-based poller is used with it instead. A fix, not a saving: off, kombu's select()
poller is back, with its limit.
"""

import sys

from hub.infra.fastpaths import FastPath

KOMBU_POLL = FastPath("KOMBU_POLL", "kombu", "5.7.0")


def broker_poll_beyond_fd_1024() -> None:
    """Once, as the Celery app is made (hub.celery): under gevent, kombu polls with poll()."""
    from kombu.utils import eventio

    gevent_select = sys.modules.get("gevent.select")
    if gevent_select is not None and eventio.xpoll is getattr(gevent_select, "poll", None) and KOMBU_POLL.on():
        eventio._get_poller = lambda: eventio._poll
