"""The project package. Its Celery app (hub.celery) is loaded by HubConfig.ready(), not here:
processes that import only a piece of `hub` — gunicorn's master (hub.logs), beat (hub.beat) —
do not pay for Celery and Django's app registry."""
