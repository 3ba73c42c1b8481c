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
