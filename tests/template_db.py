"""The run's migrated template database (deploy/test.sh, on PostgreSQL):

    python -m tests.template_db create NAME   # a database with every migration applied
    python -m tests.template_db drop NAME

Each xdist worker's test database is made from it (Django's TEST TEMPLATE setting, PostgreSQL's
CREATE DATABASE … TEMPLATE: a file copy), and its migrate then finds nothing to apply: one run of
the migrations per `make test` instead of one per worker and pass (six), each ~2 s of a worker's
CPU and more of PostgreSQL's while the first tests keep the machine busy. deploy/test.sh makes it
while pytest starts; the workers wait for it (tests/conftest.py).
"""

import os
import sys
from contextlib import contextmanager


@contextmanager
def maintenance():
    """A connection to the server's `postgres` database, with the test settings' parameters (as
    hub/http/health.py connects, without Django's cursor class and adapters)."""
    import psycopg
    from django.db import connection

    params = {k: v for k, v in connection.get_connection_params().items() if k not in ("cursor_factory", "context")}
    with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as conn:
        yield conn


def create(name: str) -> None:
    """Migrate a database under another name, then give it `name`: a database by that name is
    complete (and no connection is open to it, which a copy needs)."""
    from django.db import connection

    building = f"{name}_building"
    connection.settings_dict["TEST"] = {**connection.settings_dict["TEST"], "NAME": building, "TEMPLATE": None}
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    connection.close()
    if connection.pool is not None:  # the pooled connections stay open, as they would to a copy
        connection.close_pool()
    with maintenance() as conn:
        conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')


def drop(name: str) -> None:
    with maintenance() as conn:
        for database in (name, f"{name}_building"):
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')  # a killed build's session


def exists(conn, name: str) -> bool:
    """Whether `create(name)` is done (`conn`: a `maintenance()` connection)."""
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    action, name = sys.argv[1:]
    {"create": create, "drop": drop}[action](name)
