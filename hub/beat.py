"""The Celery app of beat (deploy/bin/beat): it only sends the sweeper on a schedule.

Beat needs the broker and the schedule, not Django's apps, the providers, the storage or the
tasks' code, so this app reads the hub's settings as a plain module (no django.setup(), no task
autodiscovery, no Celery Django fix-up, which would set Django up when beat starts): ~56 MiB
resident instead of ~104 MiB with the full app (hub.celery). The sweeper is sent by name
(`hub.sweep`, routed by its schedule entry's options).

The start-up refusal (hub.startup) needs Django and the database; deploy/bin/beat runs it first,
in the process that then execs beat (no child that a Ctrl-C could leave behind).
The secret is checked here already: the settings refuse to load without one.
"""

import importlib
import logging.config
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
settings = importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
logging.config.dictConfig(settings.LOGGING)  # as django.setup() would: JSON lines, the hub's levels

app = Celery("hub", fixups=[])
app.config_from_object(settings, namespace="CELERY")
