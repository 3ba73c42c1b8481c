"""Production refuses unsafe settings at start-up.

What the settings alone show is refused in hub/settings/base.py (DJANGO_SECRET_KEY on PostgreSQL):
every process stops while loading them. What needs the database is a Django system check tagged
"hub" (workers.checks), which every manage.py command runs with Django's checks — and which
the web (hub/wsgi.py, hub/asgi.py) and the Celery workers (hub/celery.py) run here, since
neither gunicorn nor Celery acts on Django's checks.
"""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

TAG = "hub"


def refuse_unsafe_start() -> None:
    """Raise ImproperlyConfigured, naming the settings at fault, when a "hub" check errs."""
    try:
        problems = [message for message in checks.run_checks(tags=[TAG]) if message.is_serious()]
    finally:
        connections.close_all()  # the check's connection goes back before the process forks or serves
    if problems:
        raise ImproperlyConfigured("\n".join(str(problem) for problem in problems))
