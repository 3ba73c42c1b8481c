"""The Celery app of beat (deploy/bin/beat): it only sends the sweeper on a schedule.

Beat needs the broker and the schedule, not Django's apps, the providers, the storage or the
tasks' code, so this app reads the hub's settings as a plain module (no django.setup(), no task
autodiscovery, no Celery Django fix-up, which would set Django up when beat starts): ~56 MiB
resident instead of ~104 MiB with the full app (hub.celery). The sweeper is sent by name
(`hub.sweep`, routed by its schedule entry's options).

The start-up refusal (hub.startup) needs Django and the database; it runs in a child process,
whose memory goes back when it exits. The secret is checked here already: the settings refuse
to load without one.
"""

import importlib
import logging.config
import os
import subprocess
import sys

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
settings = importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
logging.config.dictConfig(settings.LOGGING)  # as django.setup() would: JSON lines, the hub's levels

app = Celery("hub", fixups=[])
app.config_from_object(settings, namespace="CELERY")


def _refuse_unsafe_start(**kwargs) -> None:
    """Celery logs and ignores an exception a signal handler raises, so this one ends beat."""
    check = subprocess.run([sys.executable, "-m", "hub.startup"], cwd=settings.BASE_DIR, capture_output=True, text=True)
    if check.returncode != 0:
        raise SystemExit(check.stderr.strip() or f"Refusing to start: the start-up check exited {check.returncode}")


signals.beat_init.connect(_refuse_unsafe_start, weak=False)
