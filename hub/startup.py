"""Production refuses unsafe settings at start-up.

What the settings alone show is refused in hub/settings.py (DJANGO_SECRET_KEY on PostgreSQL):
every process stops while loading them. What needs the database is a Django system check tagged
"hub" (workers.checks), which every manage.py command runs with Django's checks — and which
the web (hub/wsgi.py, hub/asgi.py) and the Celery processes (hub/celery.py) run here, since
neither gunicorn nor Celery acts on Django's checks. Beat, which does not set Django up
(hub.beat), is started through this module: `python -m hub.startup celery … beat` checks, then execs beat.
"""

import os
import sys

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


def main(argv: list[str]) -> None:
    """Set Django up, run the check, exit non-zero with the reason when it refuses; then, if a
    command follows, become it (`python -m hub.startup celery -A hub.beat beat …`): the same
    process, so a supervisor waiting on it waits on the command, and none of Django's memory
    stays (exec replaces the process image)."""
    import django

    django.setup()
    try:
        refuse_unsafe_start()
    except ImproperlyConfigured as exc:
        sys.exit(f"Refusing to start: {exc}")
    if argv:
        os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
