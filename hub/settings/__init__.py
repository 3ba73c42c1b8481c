"""All configuration, read from the environment (12-factor), in this package: one module per
concern, each validating what it reads (a value that cannot work stops start-up).

With no environment variables set the hub runs on embedded defaults: SQLite, local file storage,
a filesystem Celery broker and the built-in `local` image provider. docs/operations.md "Settings"
lists every variable.
"""

from hub.settings.base import *  # noqa: F403
from hub.settings.generations import *  # noqa: F403
from hub.settings.operations import *  # noqa: F403
from hub.settings.tasks import *  # noqa: F403
