"""Under gevent (the web and the worker) the pool's connections wait for PostgreSQL on gevent's
own loop (hub/infra/fastpaths/pg_wait.py), not through gevent's emulation of select.poll: queries of
different greenlets overlap, errors and a dropped connection surface as psycopg's, a pipeline
works and its sends do not turn the loop. The child makes the emulated poll() fail, so psycopg's
own wait_poll cannot pass for it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.fastpaths.test_pg_wait import OVERLAP

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
from gevent import monkey
monkey.patch_all()
import os, resource, select, sys
import gevent, greenlet, psycopg
from hub.db import Connection

def no_poll(*args, **kwargs):
    raise AssertionError("gevent's select.poll emulation was used")

select.poll = no_poll
dsn, OVERLAP = sys.argv[1:]
a, b, victim = (Connection.connect(dsn, autocommit=True) for _ in range(3))

ticks = []
def ticker():
    while True:
        ticks.append(1)
        gevent.sleep(0.01)

tick = gevent.spawn(ticker)
# Each query's start and end, by PostgreSQL's clock: they overlapped if each began before the other
# ended (a machine busy with other work stretches the wall time, not this).
both = [gevent.spawn(conn.execute, OVERLAP, [i]) for i, conn in enumerate((a, b))]
gevent.joinall(both, raise_error=True)
(first, first_start, first_end), (second, second_start, second_end) = (g.value.fetchone() for g in both)
tick.kill()
overlap = first_start < second_end and second_start < first_end
print("overlap", overlap, [first, second] == [0, 1], len(ticks) >= 10)

try:
    a.execute("SELECT 1 / 0")
except psycopg.errors.DivisionByZero:
    print("error", a.execute("SELECT 2").fetchone()[0] == 2)

with b.pipeline():
    first, second = b.execute("SELECT 3"), b.execute("SELECT %s::int + 1", [3])
print("pipeline", first.fetchone()[0] == 3 and second.fetchone()[0] == 4)

# A pipeline's sends do not wait on the loop: switches into gevent's hub are counted while 50
# statements are sent and their results read. Each send waited for a writable socket (two waits
# a statement) until hub.db checked with the kernel first; the reads still wait on the loop.
switches = []
hub = gevent.get_hub()
greenlet.settrace(lambda event, args: switches.append(1) if event == "switch" and args[1] is hub else None)
with b.pipeline():
    cursors = [b.execute("SELECT %s::int", [i]) for i in range(50)]
values = [c.fetchone()[0] for c in cursors]
greenlet.settrace(None)
print("sends", values == list(range(50)), len(switches) < 10)
print("switches into the hub", len(switches), file=sys.stderr)

# The look at the socket works past descriptor 1023 (select() refuses those; a worker holds a
# thousand sockets).
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
high = Connection.connect(dsn, autocommit=True)
with high.pipeline():
    first, second = high.execute("SELECT 5"), high.execute("SELECT 6")
print("high", high.pgconn.socket > 1023, first.fetchone()[0] == 5 and second.fetchone()[0] == 6)

pid = victim.info.backend_pid
sleeping = gevent.spawn(victim.execute, "SELECT pg_sleep(30)")
gevent.sleep(0.3)
a.execute("SELECT pg_terminate_backend(%s)", [pid])
sleeping.join(timeout=10)
print("dropped", sleeping.ready(), isinstance(sleeping.exception, psycopg.OperationalError))
"""


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pool's connection class is PostgreSQL's")
def test_connections_wait_on_the_gevent_loop():
    s = connection.settings_dict
    dsn = f"host={s['HOST']} port={s['PORT']} user={s['USER']} dbname={s['NAME']}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, dsn, OVERLAP], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "overlap True True True",
        "error True",
        "pipeline True",
        "sends True True",
        "high True True",
        "dropped True True",
    ], done.stderr[-2000:]
