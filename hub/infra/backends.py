"""Which backends this hub runs on, asked in one place.

The embedded default (`make run` with nothing set) is SQLite, no Redis and files on disk; a
deployment adds PostgreSQL, Redis and S3. Code that takes a different path on one of them asks
here, not the settings or the connection itself, so every such fork in the code can be found by
its caller's name.
"""

from django.conf import settings
from django.db import connection

# The database vendors whose SQL can write in a WITH clause (INSERT/UPDATE … RETURNING in a
# common table expression) and whose driver pipelines statements (psycopg): PostgreSQL's.
_DML_IN_CTE = {"postgresql"}
_PIPELINED = {"postgresql"}


def redis() -> bool:
    """Redis is on (REDIS_URL): pub/sub wakes sync waits, key and upstream limits live there.
    Off, waits poll the database, concurrency is counted there, and upstream budgets are off."""
    return bool(settings.REDIS_URL)


def s3() -> bool:
    """Images live in an S3 bucket (presigned URLs), not on this disk (served by /media/)."""
    return settings.USE_S3


def postgresql(db=None) -> bool:
    """The database (the default connection, or `db`) is PostgreSQL, not the embedded SQLite."""
    return (db or connection).vendor == "postgresql"


def dml_in_cte(db=None) -> bool:
    """The database writes in common table expressions: a transition's rows in one statement."""
    return (db or connection).vendor in _DML_IN_CTE


def pipelined(db=None) -> bool:
    """The driver sends several statements in one round trip (psycopg's pipeline mode)."""
    return (db or connection).vendor in _PIPELINED
