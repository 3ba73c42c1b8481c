"""The start-up check that needs the database: no enabled catalog model may be served by the
placeholder `local` provider unless ALLOW_LOCAL_PROVIDER (off by default on a shared database).

A system check tagged "hub": every manage.py command that runs Django's checks runs it, and the
web and Celery processes run it at start-up through hub.startup. Each generation is checked
again when it runs (workers.providers.provider_for): the catalog can change while the hub runs.
"""

from django.conf import settings
from django.core import checks
from django.db import DatabaseError, ProgrammingError

from generations.catalog import enabled_models
from hub.startup import TAG
from upstreams.targets import upstream_targets
from workers.providers import LOCAL, backend_name


@checks.register(TAG)
def local_provider_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    if settings.ALLOW_LOCAL_PROVIDER:
        return []
    try:
        served = [
            model.id
            for model in enabled_models()
            if backend_name(model.backend) == LOCAL and not upstream_targets(model)  # upstreams serve it otherwise
        ]
    except ProgrammingError:  # the catalog table does not exist yet: `migrate` is about to create it
        return []
    except DatabaseError as exc:  # unreachable: start anyway, every generation is still checked
        return [checks.Warning(f"Could not read the model catalog to check its providers: {exc}", id="hub.W001")]
    if not served:
        return []
    return [
        checks.Error(
            f"Enabled catalog model(s) {', '.join(served)} would be served by the built-in `local` provider"
            " (placeholder images, test directives in prompts) on a PostgreSQL database",
            hint="Set IMAGE_PROVIDER=openai (or the model's backend in the admin), or HUB_ALLOW_LOCAL_PROVIDER=true"
            " for a demo or a test run.",
            id="hub.E001",
        )
    ]
