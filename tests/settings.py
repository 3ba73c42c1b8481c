"""Test settings: the production settings, with a fast password hasher.

PBKDF2 costs ~0.3 s of CPU per password by design; tests create hundreds of users.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

# Under pytest-xdist (`make test` runs two at a time) each worker process keeps apart from the
# others everything a test can see of another's: its state folder (SQLite, media, broker folder,
# logs), its Celery queues and its Redis database (rate limits, upstream budgets, completions are
# global keys there). pytest-django adds the worker's suffix to the test database's name itself.
# The processes a test starts inherit the worker's environment, already keyed: once only.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker and os.environ.get("HUB_TEST_XDIST_WORKER") != _worker:
    os.environ["HUB_TEST_XDIST_WORKER"] = _worker
    _var_dir = os.environ.get("HUB_VAR_DIR") or str(Path(__file__).resolve().parent.parent / "var")
    os.environ["HUB_VAR_DIR"] = os.path.join(_var_dir, _worker)
    for _name, _default in (("HUB_GENERATIONS_QUEUE", "generations"), ("HUB_HOUSEKEEPING_QUEUE", "housekeeping")):
        os.environ[_name] = f"{os.environ.get(_name) or _default}-{_worker}"
    if os.environ.get("REDIS_URL"):
        # gw0 on the run's database (deploy/test.sh: 15), gw1 on the one below, and so on; a pass
        # run beside another (deploy/test.sh's second) starts HUB_TEST_REDIS_DB_OFFSET below it.
        _url = urlsplit(os.environ["REDIS_URL"])
        _below = int(os.environ.get("HUB_TEST_REDIS_DB_OFFSET") or 0) + int(_worker.removeprefix("gw"))
        _db = (int(_url.path.strip("/") or 0) - _below) % 16
        os.environ["REDIS_URL"] = _url._replace(path=f"/{_db}").geturl()

from hub.settings import *  # noqa: E402, F403

# deploy/test.sh migrates one database per run (tests/template_db.py); each test database is a
# copy of it, so its migrate finds nothing to do.
if os.environ.get("HUB_TEST_DATABASE_TEMPLATE") and DATABASES["default"]["ENGINE"].endswith("postgresql"):  # noqa: F405
    DATABASES["default"].setdefault("TEST", {})["TEMPLATE"] = os.environ["HUB_TEST_DATABASE_TEMPLATE"]  # noqa: F405

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Tests edit the catalog directly and expect to see it at once.
CATALOG_CACHE_SECONDS = 0

# The tests' webhook receivers listen on loopback (production refuses it; tests/webhooks checks
# the refusal with this turned off).
WEBHOOK_ALLOW_LOOPBACK = True

# Encrypts the upstreams' credentials (on PostgreSQL the hub refuses them without a key); the
# worker processes the tests start read these same settings.
UPSTREAM_KEYS = ["bvvfiIw7LbVcMpu0onQqMI-I6nMu1zrbCb8os81EBxo="]
