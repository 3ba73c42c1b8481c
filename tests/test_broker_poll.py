"""A gevent worker's broker sockets may have file descriptors past 1024 (it keeps ~1,000 provider
connections open): kombu must poll them with gevent's poll(), not select() (hub/celery.py)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
from gevent import monkey
monkey.patch_all()
import resource, socket
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
import hub.celery  # noqa: F401 - what every worker process imports
from kombu.utils import eventio
held = [socket.socket() for _ in range(1100)]  # like a worker's provider connections
a, b = socket.socketpair()
assert a.fileno() >= 1024, a.fileno()
poller = eventio.poll()
poller.register(a, eventio.READ)
b.send(b"x")
print(type(poller).__name__, poller.poll(1.0) == [(a.fileno(), eventio.READ)])
"""


def test_a_broker_socket_past_fd_1024_is_polled_under_gevent():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "hub.settings", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["_poll", "True"]
