"""Hub settings plus the bench-only floor endpoint; loaded by the hub's own processes.

The stack runs every hub process with DJANGO_SETTINGS_MODULE=bench.settings, so the floor
endpoint is served by exactly the same server configuration as the API, and is never part of
the public API (hub.settings does not route it).
"""

from hub.settings import *  # noqa: F403
from hub.settings import ROOT_URLCONF as HUB_ROOT_URLCONF  # noqa: F401  (read by bench.urls)

ROOT_URLCONF = "bench.urls"
