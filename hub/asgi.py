import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
application = get_asgi_application()

from hub.infra import storage  # noqa: E402 — needs the apps loaded
from hub.infra.gcfreeze import freeze_startup_objects  # noqa: E402
from hub.startup import refuse_unsafe_start  # noqa: E402

refuse_unsafe_start()
storage.warm_up()
freeze_startup_objects()
