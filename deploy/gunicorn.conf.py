"""gunicorn hooks for deploy/bin/web (its options stay on the command line there).

Graceful shutdown: on SIGTERM a gevent worker stops accepting connections and gives the
requests in flight --graceful-timeout seconds before it kills them. A sync request may wait for
its generation far longer than that, so the worker's SIGTERM handler also tells the process
(hub.shutdown) that in-flight waits must answer within the grace period less a margin: what is
still waiting then is answered 202 with its poll_url instead of being cut.
"""

import signal
import threading

# What a waiting request needs, after its deadline, to re-read its row and answer.
STOP_MARGIN_SECONDS = 3.0


def post_worker_init(worker):
    within = max(worker.cfg.graceful_timeout - STOP_MARGIN_SECONDS, 0.0)
    handle_exit = worker.handle_exit  # gunicorn's own SIGTERM handler: stop accepting, drain

    def on_sigterm(sig, frame):
        handle_exit(sig, frame)
        _in_background(lambda: _request_stop(within))

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.siginterrupt(signal.SIGTERM, False)


def _request_stop(within: float) -> None:
    from hub import shutdown

    shutdown.request_stop(within=within)


def _in_background(fn) -> None:
    """Out of the signal handler, which must not block (gunicorn's gevent worker does the same
    for SIGQUIT): a greenlet under gevent, else a thread."""
    from gevent import monkey

    if monkey.is_module_patched("threading"):
        import gevent

        gevent.spawn(fn)
    else:
        threading.Thread(target=fn, daemon=True).start()
