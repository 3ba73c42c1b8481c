"""CPU profiles of the hub's web processes during a bench run, by yappi's CPU clock.

    .venv-hub/bin/pip install yappi   # not a project dependency; the hub runs from .venv-hub
    .venv/bin/python -m bench run sync-c32-0s --requests 800 \\
        --env PYTHONPATH=bench/profile --env HUB_PROFILE_DIR=/tmp/profiles

Python imports this module at start-up when its folder is on PYTHONPATH. In a gunicorn web
process (forked from the master) it starts yappi — CPU time, per greenlet — and, when the
process exits at the end of the run, writes HUB_PROFILE_DIR/gunicorn-PID.pstat, which the
standard library's pstats reads. CPU time rather than wall samples: on a busy 2-core machine a
sampler such as py-spy counts the time a process waits for a core, and that lands on whatever
system call woke another process.

With HUB_GC_STATS_DIR instead (or as well), the web and worker processes time every garbage
collection (`gc.callbacks`) and keep HUB_GC_STATS_DIR/<process>-PID.json up to date (at most
once a second, and at exit): collections and seconds per generation, the full collections' own
durations, and the count of frozen objects (hub/infra/gcfreeze.py). The GC figures of
bench/RESULTS.md were made with it:

    .venv/bin/python -m bench run sync-c1000-5s --requests 3000 --ramp 5 \\
        --env PYTHONPATH=bench/profile --env HUB_GC_STATS_DIR=/tmp/gc

With HUB_ROUND_TRIPS_DIR the worker process counts its SQL statements (by kind and tables),
connection checkouts and Redis round trips (by command) into HUB_ROUND_TRIPS_DIR/celery-PID.json
— the fourteenth sitting's counts per generation:

    .venv/bin/python -m bench run sync-c32-0s --requests 300 \\
        --env PYTHONPATH=bench/profile --env HUB_ROUND_TRIPS_DIR=/tmp/trips
"""

import atexit
import gc
import json
import os
import sys
import time

if os.environ.get("HUB_PROFILE_DIR") and "hub.wsgi" in " ".join(sys.argv):
    import yappi

    def _start() -> None:
        yappi.set_clock_type("cpu")
        yappi.set_context_backend("greenlet")
        yappi.start(builtins=True)

    def _save() -> None:
        yappi.stop()
        path = os.path.join(os.environ["HUB_PROFILE_DIR"], f"gunicorn-{os.getpid()}.pstat")
        yappi.get_func_stats().save(path, type="pstat")

    os.register_at_fork(after_in_child=_start)  # the workers, not the master
    atexit.register(_save)


_HUB_PROCESS = next((name for name in ("gunicorn", "celery") if name in " ".join(sys.argv)), None)
if os.environ.get("HUB_GC_STATS_DIR") and _HUB_PROCESS:
    _gc = {"count": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "full_ms": [], "started": 0.0, "written": 0.0}

    def _gc_save() -> None:
        stats = {key: _gc[key] for key in ("count", "seconds", "full_ms")}
        stats["frozen"], stats["cpu_seconds"] = gc.get_freeze_count(), time.process_time()
        path = os.path.join(os.environ["HUB_GC_STATS_DIR"], f"{_HUB_PROCESS}-{os.getpid()}.json")
        with open(path, "w") as out:
            json.dump(stats, out)

    def _gc_timed(phase: str, info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            _gc["started"] = now
            return
        generation, took = info["generation"], now - _gc["started"]
        _gc["count"][generation] += 1
        _gc["seconds"][generation] += took
        if generation == 2:
            _gc["full_ms"].append(round(took * 1000, 1))
        if now - _gc["written"] > 1:
            _gc["written"] = now
            _gc_save()

    gc.callbacks.append(_gc_timed)
    atexit.register(_gc_save)


if os.environ.get("HUB_ROUND_TRIPS_DIR") and _HUB_PROCESS:
    # A web or worker process's statements, connection checkouts and Redis round trips, counted by kind and
    # kept in HUB_ROUND_TRIPS_DIR/<gunicorn|celery>-PID.json (at most once a second, and at exit): divided by
    # the generations run, what one generation costs in round trips, free of the machine's noise.
    import collections

    import psycopg
    import psycopg_pool
    import redis.connection

    _trips: collections.Counter = collections.Counter()
    _trips_written = [0.0]

    def _trips_save() -> None:
        path = os.path.join(os.environ["HUB_ROUND_TRIPS_DIR"], f"{_HUB_PROCESS}-{os.getpid()}.json")
        with open(path + ".tmp", "w") as out:
            json.dump(dict(sorted(_trips.items())), out, indent=1)
        os.replace(path + ".tmp", path)

    def _trip(kind: str) -> None:
        _trips[kind] += 1
        if time.monotonic() - _trips_written[0] > 1:
            _trips_written[0] = time.monotonic()
            _trips_save()

    def _tables(sql: str) -> str:
        words = sql.replace("(", " ").split()
        return ",".join(sorted({w.strip('"') for w in words if w.strip('"').split("_")[0] in _APPS}))

    _APPS = {"generations", "upstreams", "billing", "apikeys", "accounts"}
    _execute = psycopg.Cursor.execute
    _getconn = psycopg_pool.ConnectionPool.getconn
    _send = redis.connection.AbstractConnection.send_packed_command

    def _counted_execute(self, query, *args, **kwargs):
        sql = str(query)
        _trip(f"sql {sql.split(None, 1)[0].upper()} {_tables(sql)}")
        return _execute(self, query, *args, **kwargs)

    def _counted_getconn(self, *args, **kwargs):
        _trip("pg checkout")
        return _getconn(self, *args, **kwargs)

    def _counted_send(self, command, *args, **kwargs):
        # One send is one round trip (a pipeline packs its commands in one); named by its first
        # command, and a script or a sorted-set command by its first key's last part.
        first = command[0] if isinstance(command, (list, tuple)) else command
        parts = bytes(first).split(b"\r\n")
        name = parts[2].decode(errors="replace").upper() if len(parts) > 2 else "?"
        if name in ("EVALSHA", "EVAL") and len(parts) > 8:
            name += " " + parts[8].decode(errors="replace").rsplit(":", 1)[-1]
        elif name in ("PUBLISH", "ZRANGE", "ZREM") and len(parts) > 4:
            name += " " + parts[4].decode(errors="replace").rsplit(":", 1)[0]
        _trip(f"redis {name}")
        return _send(self, command, *args, **kwargs)

    psycopg.Cursor.execute = _counted_execute
    psycopg_pool.ConnectionPool.getconn = _counted_getconn
    redis.connection.AbstractConnection.send_packed_command = _counted_send
    atexit.register(_trips_save)
