"""The objects a process holds from start-up on, kept out of the garbage collector's way.

A web or worker process loads Django's apps, models, settings, URLs and every module it imports
before it serves: hundreds of thousands of objects that live as long as the process. CPython's
full collections walked all of them each time — ~90 ms, during which the process's event loop
stands still and every request it holds waits. Counted with `gc.callbacks` in bench
sync-c32-0s (1,500 generations): 5 full collections in the web and 6 in the worker, and the
collector's work in all was 9 % of the web's CPU and 6 % of the worker's.

`gc.freeze()` moves every object tracked so far into a permanent generation that collections
skip (its documented use: once start-up is done). What a process would otherwise build on its
first request and keep — the S3 client and URL signer (hub.storage.warm_up), the provider's SDK
clients (workers.providers.warm_up) — is built first, or the collector would still walk it:
frozen before those, the full collections under load still took 23–180 ms each. Objects that
start-up made and that would have become garbage later stay allocated; there are few.
"""

import gc


def freeze_startup_objects() -> None:
    """Called once a process has loaded and warmed up the app, before it serves: the web at the
    end of hub/wsgi.py (and hub/asgi.py), a worker on Celery's worker_ready (the gevent and
    threads pools run tasks in it) and each prefork child on worker_process_init (workers.apps)."""
    gc.collect()  # what start-up already dropped is freed, not frozen
    gc.freeze()
