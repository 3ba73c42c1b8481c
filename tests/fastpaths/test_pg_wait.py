"""PG_WAIT (hub/infra/fastpaths/pg_wait.py): under gevent psycopg waits on gevent's loop itself, or,
off, through psycopg's own wait (gevent's emulation of select.poll); queries, their rows, errors,
pipelines, overlapping greenlets and a dropped connection come out the same."""

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.conftest import ROOT

# A query that sleeps, with when PostgreSQL started it and when it ended: two of them overlapped
# (their greenlets waited at once) if each began before the other ended — a fact of the server's
# clock, which a machine busy with other work does not stretch as it does the wall time.
OVERLAP = "SELECT %s::int, statement_timestamp(), clock_timestamp() FROM pg_sleep(0.3)"

CHILD = """
from gevent import monkey
monkey.patch_all()
import json, select, sys
import gevent, psycopg
import django
django.setup()
from hub.db import Connection

emulated = []
real_poll = select.poll
def counted_poll(*args, **kwargs):
    emulated.append(1)
    return real_poll(*args, **kwargs)
select.poll = counted_poll

dsn, OVERLAP = sys.argv[1:]
a, b, victim = (Connection.connect(dsn, autocommit=True) for _ in range(3))
seen = {}
both = [gevent.spawn(conn.execute, OVERLAP, [i]) for i, conn in enumerate((a, b))]
gevent.joinall(both, raise_error=True)
(first, first_start, first_end), (second, second_start, second_end) = (g.value.fetchone() for g in both)
seen["overlap"] = first_start < second_end and second_start < first_end
seen["rows"] = [first, second]
seen["types"] = [str(v) for v in a.execute(
    "SELECT 1::int, 'x'::text, 1.5::numeric, '2026-01-02T03:04:05Z'::timestamptz, '{\\"k\\": [1]}'::jsonb, NULL"
).fetchone()]
seen["many"] = a.execute("SELECT generate_series(1, 2000)").fetchall()[-1][0]
try:
    a.execute("SELECT 1 / 0")
except psycopg.errors.DivisionByZero as exc:
    seen["error"] = [type(exc).__name__, a.execute("SELECT 2").fetchone()[0]]
with b.pipeline():
    cursors = [b.execute("SELECT %s::int", [i]) for i in range(20)]
seen["pipeline"] = [c.fetchone()[0] for c in cursors]
pid = victim.info.backend_pid
sleeping = gevent.spawn(victim.execute, "SELECT pg_sleep(30)")
gevent.sleep(0.3)
a.execute("SELECT pg_terminate_backend(%s)", [pid])
sleeping.join(timeout=10)
seen["dropped"] = [sleeping.ready(), type(sleeping.exception).__name__]
print(json.dumps({"seen": seen, "emulated poll used": bool(emulated)}))
"""


def _child(dsn: str, switch: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HUB_FAST_PATHS": "true", "HUB_FAST_PATH_PG_WAIT": switch}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, dsn, OVERLAP], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pool's connection class is PostgreSQL's")
def test_queries_answer_alike_on_the_loop_or_through_psycopgs_wait():
    s = connection.settings_dict
    dsn = f"host={s['HOST']} port={s['PORT']} user={s['USER']} dbname={s['NAME']}"
    fast, library = _child(dsn, "true"), _child(dsn, "false")
    assert (fast["emulated poll used"], library["emulated poll used"]) == (False, True)
    assert fast["seen"] == library["seen"]
    assert fast["seen"]["overlap"] is True and fast["seen"]["rows"] == [0, 1]
    assert fast["seen"]["dropped"] == [True, "AdminShutdown"]  # an OperationalError
