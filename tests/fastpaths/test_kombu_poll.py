"""KOMBU_POLL (hub/infra/fastpaths/kombu_poll.py): under gevent kombu polls its broker sockets with
poll(), which takes file descriptors past 1024; off, kombu's own select() poller, which answers
the same for the sockets it can take. Both drop a descriptor closed while registered: reported, it
ended the worker (hub/infra/fastpaths/kombu_poll.py)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

CHILD = """
from gevent import monkey
monkey.patch_all()
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
import hub.celery  # noqa: F401 - what every worker process imports
from kombu.utils import eventio

def ready(held):
    sockets = [socket.socket() for _ in range(held)]  # like a worker's provider connections
    a, b = socket.socketpair()
    poller = eventio.poll()
    poller.register(a, eventio.READ)
    b.send(b"x")
    try:
        return poller.poll(1.0) == [(a.fileno(), eventio.READ)]
    except ValueError:  # select(): "filedescriptor out of range"
        return "refused"

def closed_dropped():  # a broker connection closed while its socket was registered (Redis restarted)
    a, b = socket.socketpair()
    poller = eventio.poll()
    poller.register(a, eventio.READ | eventio.ERR)  # as kombu registers its BRPOP socket
    a.close()
    dropped = not poller.poll(0.1) and not poller.poll(0.1)
    c, d = socket.socketpair()
    poller.register(c, eventio.READ | eventio.ERR)
    c.close()
    poller.unregister(c)  # as kombu's channel does once the connection is gone (fileno -1)
    return dropped and not poller.poll(0.1)

print(type(eventio.poll()).__name__, ready(0), ready(1100), closed_dropped())
"""


@pytest.mark.parametrize(
    ("switch", "expected"), [("true", "OpenOnlyPoll True True True"), ("false", "_select True refused True")]
)
def test_a_broker_socket_is_polled_alike_below_fd_1024_only_by_poll_past_it_and_dropped_once_closed(switch, expected):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "hub.settings",
        "PYTHONPATH": str(ROOT),
        "HUB_FAST_PATH_KOMBU_POLL": switch,
        "HUB_FAST_PATHS": "true",
    }
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == expected
