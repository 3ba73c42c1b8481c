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
"""

import atexit
import os
import sys

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
