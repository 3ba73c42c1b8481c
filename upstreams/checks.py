"""The start-up check of the upstreams' credentials (tagged "hub": the web and the workers refuse
to start on an error, hub.startup): on PostgreSQL an upstream's credential needs HUB_UPSTREAM_KEYS,
and every stored credential must open with them (a key removed too early would otherwise fail
every call of that upstream, found only at its first generation)."""

from django.core import checks
from django.db import DatabaseError, connection

from hub.startup import TAG
from upstreams.credentials import CredentialsLocked, credential_open
from upstreams.models import Upstream


@checks.register(TAG)
def upstream_credentials_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    try:
        rows = list(Upstream.objects.values_list("name", "credential_encrypted"))
    except DatabaseError as exc:
        if _not_migrated():  # `migrate` is about to create the table (it runs the checks first)
            return []
        return [checks.Warning(f"Could not read the upstreams to check their credentials: {exc}", id="hub.W002")]
    locked = []
    for name, token in rows:
        try:
            credential_open(token)
        except CredentialsLocked:
            locked.append(name)
    if not locked:
        return []
    return [
        checks.Error(
            f"The credential of upstream(s) {', '.join(locked)} cannot be decrypted",
            hint="Set HUB_UPSTREAM_KEYS to the Fernet keys that encrypted them (comma-separated, the newest first);"
            " never drop a key before `manage.py hub_upstream rotate-keys` ran with the new one first.",
            id="hub.E002",
        )
    ]


def _not_migrated() -> bool:
    """The upstreams' table does not exist yet (PostgreSQL raises ProgrammingError for it, SQLite
    OperationalError: the error's kind does not tell it from a database that is down)."""
    try:
        return Upstream._meta.db_table not in connection.introspection.table_names()
    except DatabaseError:
        return False
