"""The objects a process holds from start-up on, kept out of the garbage collector's way.

A web or worker process loads Django's apps, models, settings, URLs and every module it imports
before it serves, and builds its S3 client and provider SDK clients on first use: a few hundred
thousand objects that live as long as the process. CPython's full collections walked all of
them each time, 50–180 ms during which the process's event loop stood still.

`gc.freeze()` moves every object tracked so far into a permanent generation that collections
skip (its documented use: once start-up is done). What a process would otherwise build on its
first request and keep — the S3 client and URL signer (hub.infra.storage.warm_up), the provider's SDK
clients (workers.providers.warm_up) — is built first, or the collector would still walk it.
Measured with `gc.callbacks` in bench sync-c32-0s (1,500 generations): the worker's full
collections under load went from three of 108–179 ms to one of 5–7 ms. The web's did not get
cheaper (~195 ms in all, either way): what they spend is the requests' own cyclic garbage —
Django's and DRF's request, response and view objects refer to one another, so each request is
freed by the collector, not by reference counting — and no freeze changes that. Objects that
start-up made and that would have become garbage later stay allocated; there are few.

And a full collection runs after every FULL_AFTER_YOUNGER collections of the middle generation,
not CPython's 10. A sync request that waits seconds outlives the young generations, so at c1000
each full collection walked a thousand waiting requests' objects, ~150 ms: in a
`sync-c1000-5s --requests 3000 --ramp 5` run full collections took 1.2 s of the web's 15 s of
CPU (the worker's: 1.5 of 22.5 s). At 100, all collections together took 1.26 and 1.33 s
against 1.89 s in the web, 0.96 and 1.19 s against 2.14 s in the worker (two runs against one).
The price is memory: the garbage that reached the old generation waits longer — the web's
peak RSS in those runs was 245 MiB against 213 MiB.
"""

import gc

FULL_AFTER_YOUNGER = 100


def freeze_startup_objects() -> None:
    """Called once a process has loaded and warmed up the app, before it serves: the web at the
    end of hub/wsgi.py (and hub/asgi.py), a worker on Celery's worker_ready (the gevent and
    threads pools run tasks in it) and each prefork child on worker_process_init (workers.apps)."""
    gc.collect()  # what start-up already dropped is freed, not frozen
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_AFTER_YOUNGER)
