"""The run's migrated template database (deploy/test.sh, on PostgreSQL):

    python -m tests.template_db create NAME   # a database with every migration applied
    python -m tests.template_db drop NAME

Each xdist worker's test database is made from it (Django's TEST TEMPLATE setting, PostgreSQL's
CREATE DATABASE … TEMPLATE: a file copy), and its migrate then finds nothing to apply: one run of
the migrations per `make test` instead of one per worker and pass (six), each ~2 s of a worker's
CPU and more of PostgreSQL's while the first tests keep the machine busy. deploy/test.sh makes it
while pytest starts; the workers wait for it (`wait_for`, tests/conftest.py).
"""

import os
import sys
import time
from contextlib import contextmanager


@contextmanager
def _maintenance():
    """A connection to the server's `postgres` database, as the test settings' user."""
    import psycopg
    from django.db import connection

    s = connection.settings_dict
    params = {"host": s["HOST"], "port": s["PORT"] or None, "user": s["USER"], "password": s["PASSWORD"] or None}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as maintenance:
        yield maintenance


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
    with _maintenance() as maintenance:
        maintenance.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')


def drop(name: str) -> None:
    with _maintenance() as maintenance:
        for database in (name, f"{name}_building"):
            maintenance.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')  # a killed build's session


def wait_for(name: str, *, timeout: float = 90) -> None:
    """Return once `create(name)` is done; fail after `timeout` seconds (its output: template.log in
    the run's state folder, .var-test/run-<pid>)."""
    deadline = time.monotonic() + timeout
    with _maintenance() as maintenance:
        while not maintenance.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            if time.monotonic() > deadline:
                raise RuntimeError(f"template database {name} not made in {timeout:.0f} s: see the run's template.log")
            time.sleep(0.1)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    action, name = sys.argv[1:]
    {"create": create, "drop": drop}[action](name)
