"""The project package. Its Celery app (hub.celery) is loaded by HubConfig.ready(), not here: a
process that imports only a piece of `hub` — gunicorn's master (hub.infra.logs) — does not pay for
Celery and Django's app registry."""
