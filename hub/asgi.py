import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
application = get_asgi_application()

from hub.startup import refuse_unsafe_start  # noqa: E402 — needs the apps loaded

refuse_unsafe_start()
