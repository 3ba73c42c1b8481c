import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.factories import bearer, make_key, make_user

ROOT = Path(__file__).resolve().parent.parent
# The hub's processes a test starts (workers, webs, manage.py) run on the hub's own dependencies,
# as the image installs them: `.venv-hub`, which `make test` builds (deploy/test.sh says where).
# Not the test virtualenv: its extra packages are imported when present (structlog's rich, the
# entry points Celery scans) and cost each of a run's ~130 hub process starts ~0.3 s of CPU.
HUB_BIN = Path(os.environ.get("HUB_TEST_HUB_BIN") or Path(sys.executable).parent)
HUB_PYTHON = str(HUB_BIN / "python")
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the kernel kills a test's helper process if the test run itself dies,
    so a killed run never leaves workers consuming the next run's queue."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items):
    """Tests are marked `browser` or `deploy` by the folder they live in (`make test-fast` leaves
    them out). The browser tests run on one xdist worker (one Chromium and one live server), and so
    do the tests on the Docker daemon (`--dist loadgroup`); the other deploy tests spread like any.

    Once every plugin has ordered and selected them (pytest-django: database tests, then those in
    a transaction, then the others), the longest go first, so that none of them starts late and
    makes the run's tail: the Docker test (the images and a whole stack: a minute or two), then the
    slow ones, then the rest (a stable sort: each tier keeps that order; xdist hands the tests out
    in this order)."""
    for item in items:
        for folder in ("browser", "deploy"):
            if ROOT / "tests" / folder in item.path.parents:
                item.add_marker(folder)
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.xdist_group("browser"))
        if "dockerd" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("docker"))
    result = yield
    items.sort(key=lambda item: ("dockerd" not in item.fixturenames, item.get_closest_marker("slow") is None))
    return result


def pytest_configure():
    """Transactional tests empty the database after each test with Django's flush: on PostgreSQL one
    TRUNCATE of every table, which makes new files for each — here 1.3 s a flush on a busy machine,
    against 0.08 s for a DELETE from each table (the foreign keys are deferred: checked when the
    flush commits). tests/billing/test_races.py and tests/api/test_cancel_and_wait.py: 19.2 s of
    flushing, 1.2 s with DELETE."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences:
            return truncate(self, style, tables, reset_sequences=True, allow_cascade=allow_cascade)
        return [f"{style.SQL_KEYWORD('DELETE FROM')} {style.SQL_FIELD(self.quote_name(table))};" for table in tables]

    DatabaseOperations.sql_flush = sql_flush


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Before the test database is made: when it is to be a copy of the run's template
    (tests/settings.py), wait until deploy/test.sh has made that (tests/template_db.py)."""
    template = settings.DATABASES["default"].get("TEST", {}).get("TEMPLATE")
    if template:
        from tests import template_db

        with template_db.maintenance() as conn:
            made = until(lambda: template_db.exists(conn, template), timeout=90, interval=0.1)
        assert made, f"template database {template} not made in 90 s: see template.log in the run's state folder"


@pytest.fixture(autouse=True)
def _catalog(request):
    """Transactional tests flush the seeded catalog row; put it back for every DB test — those
    marked so, and those that ask for the database by a fixture (`db`, `customer`…)."""
    if "transactional_db" in request.fixturenames or _is_transactional(request):
        request.getfixturevalue("transactional_db")
    elif "db" in request.fixturenames or request.node.get_closest_marker("django_db"):
        request.getfixturevalue("db")
    else:
        return
    from generations.catalog_seed import seed_catalog
    from generations.models import ImageModel

    seed_catalog(ImageModel)


@pytest.fixture(autouse=True)
def _default_upstream_fresh(request):
    """The default upstream's shared state (its circuit, cooldown, learned limit) lives in Redis
    across tests: each test that talks to the fake provider starts from none."""
    if "fake_openai" not in request.fixturenames or not settings.REDIS_URL:
        return
    from upstreams.targets import default_target

    server = request.getfixturevalue("fake_openai")
    forget_upstream_state(default_target("openai", base_url=server.base_url).upstream_id)


def forget_upstream_state(upstream_id: str) -> None:
    from hub.infra.redis_client import redis_client
    from upstreams.budget import state_key

    client = redis_client()
    keys = list(client.scan_iter(match=state_key(upstream_id, "*"), count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _worker_idle_before_flush(request):
    """After a test with real workers, let in-flight generations settle before the database is
    flushed: a flush racing a worker's transaction can deadlock."""
    if not request.node.get_closest_marker("worker"):
        yield
        return
    request.getfixturevalue("transactional_db")  # set up first, so flushed after this teardown
    yield
    from generations.models import Generation

    # A test on `unconsumed_queue` leaves its generations queued where no worker will ever take
    # them: waiting for those was 15 s of nothing after each such test (60 s a run, issue 31).
    # A fault test's workers (`start_worker`, tests/faults/conftest.py) read a queue of the test's
    # own and are SIGKILLed by now: what they left queued or running stays so (15 s after
    # tests/faults/test_limit_slots.py, in each of deploy/test.sh's two passes).
    if "start_worker" in request.fixturenames:
        unsettled = []
    elif "unconsumed_queue" in request.fixturenames:
        unsettled = ["running"]
    else:
        unsettled = ["queued", "running"]
    until(lambda: not Generation.objects.filter(status__in=unsettled).exists(), timeout=15)
    # A worker may still be inside a transaction that touches no generation (a duplicate
    # message's claim, a lease renewal): wait until no other session is mid-transaction.
    until(lambda: not _other_sessions_in_transaction(), timeout=15)


def _other_sessions_in_transaction() -> bool:
    from django.db import connection

    if connection.vendor != "postgresql":
        return False  # SQLite: a writer holds the file lock, and the flush waits its turn
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND (state = 'active' OR state LIKE 'idle in transaction%')"
        )
        return cursor.fetchone()[0] > 0


# Partial images are relayed from the worker to the stream over Redis; a hub without it sends none
# (docs/api.md).
relays_partials = pytest.mark.skipif(not settings.REDIS_URL, reason="partial images are relayed over Redis")


def settings_source() -> str:
    """The settings' code: every module of hub/settings/."""
    return "\n".join(path.read_text() for path in sorted((ROOT / "hub" / "settings").glob("*.py")))


def until(condition, *, timeout: float, interval: float = 0.05) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def not_near_a_minute_edge() -> None:
    """The images-per-minute limit without Redis counts fixed minutes: start a test well inside one."""
    while datetime.now(UTC).second > 50:
        time.sleep(1)


def _is_transactional(request) -> bool:
    marker = request.node.get_closest_marker("django_db")
    return bool(marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])))


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def customer(db):
    """A PRO user with 120 credits and a key: (user, raw_key, auth headers)."""
    user = make_user(credits=120, account_type="PRO")
    raw = make_key(user)
    return user, raw, bearer(raw)


def database_url_for_subprocess() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}:{s['PASSWORD'] or ''}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


class ChildProcess:
    """A server process a test starts (in its own session, dying with the run): stop, log, children."""

    proc: subprocess.Popen | None = None
    args: list[str]
    env: dict
    log_path: Path

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30):
        """Start the process and return once `ready()`; raise with its log's tail if it dies or
        is not ready within `timeout` seconds."""
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.ready():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"{type(self).__name__} did not start:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, timeout: float = 15) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text()

    def pool_children(self) -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]


class WorkerProcess(ChildProcess):
    """A real `celery -A hub worker` process on the configured broker and the test database
    (gevent pool by default, as deploy/bin/worker runs it). It does not sweep unless a test
    asks (WORKER_SWEEPS=true): the tests run the sweeper when they choose. None for pool,
    concurrency or queues leaves the option out, as `celery -A hub worker` alone does."""

    def __init__(
        self,
        *,
        env_overrides: dict | None = None,
        name: str = "worker",
        concurrency: int | None = 8,
        pool: str | None = "gevent",
        queues: str | None = "",
    ):
        self.log_path = Path(settings.VAR_DIR) / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url_for_subprocess(),
            "WORKER_SWEEPS": "false",
            **(env_overrides or {}),
        }
        if queues == "":
            queues = f"{settings.GENERATIONS_QUEUE},{settings.HOUSEKEEPING_QUEUE}"
        options = {"--pool": pool, "--concurrency": concurrency, "--queues": queues}
        self.args = [
            HUB_PYTHON,
            "-m",
            "celery",
            "-A",
            "hub",
            "worker",
            *[part for option, value in options.items() if value is not None for part in (option, str(value))],
            "--loglevel",
            "INFO",
            "--hostname",
            f"{name}-{time.monotonic_ns()}@%h",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        ]
        self.proc = None

    def ready(self) -> bool:
        return "ready." in self.log_path.read_text()


@pytest.fixture
def recheck_every(monkeypatch):
    """recheck_every(seconds): this process's waiters, made afresh, re-read the waiting rows every
    `seconds` (production: every 5 s). Longer, a wait that ends within seconds was woken by its
    message or its own read, never by that round; shorter, the round is what a test watches."""
    from generations import completion

    def every(seconds: float) -> None:
        monkeypatch.setattr(completion, "RECHECK_SECONDS", seconds)
        completion.waiters.reset()

    yield every
    completion.waiters.reset()  # the next test's listener re-checks as production's does


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# gunicorn's gevent worker drops a new connection whose request it has not read within its
# keep-alive (WEB_KEEPALIVE_SECONDS, 2 s unless set), silently: the client sees the server
# disconnect. A capacity test opens hundreds at once in a process sharing two cores with the rest
# of `make test`, where some first reads came later than that. These tests are about what held
# connections cost.
PATIENT_WEB = {"WEB_KEEPALIVE_SECONDS": "30"}


class WebProcess(ChildProcess):
    """The production web server (`deploy/bin/web`: gunicorn, gevent workers) on a free
    loopback port, on the test database."""

    def __init__(self, *, env_overrides: dict | None = None, processes: int = 1):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(settings.VAR_DIR) / f"web-{os.getpid()}-{time.monotonic_ns()}.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url_for_subprocess(),
            "HUB_BIN": str(HUB_BIN),
            "HUB_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(processes),
            **(env_overrides or {}),
        }
        self.args = [str(ROOT / "deploy" / "bin" / "web"), "--log-level", "warning"]
        self.proc = None

    def ready(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def worker_pids(self) -> list[int]:
        return self.pool_children()


def purge_queues(*queues: str) -> None:
    from hub.celery import app

    with app.connection_for_write() as conn:
        for queue in queues or (settings.GENERATIONS_QUEUE, settings.HOUSEKEEPING_QUEUE):
            conn.default_channel.queue_purge(queue)


OPENAI_TEST_KEY = "sk-test-hub-0123456789"


def _unconsumed(settings, setting: str, prefix: str):
    """`setting` (a queue name) set to a queue no worker reads, through pytest-django's `settings`
    (as every test's own changes are), so the changes are undone in the reverse order they were
    made (see tests/faults/conftest.py `fault_queue`); what was sent there is dropped afterwards."""
    import uuid

    queue = f"{prefix}-{uuid.uuid4().hex[:8]}"
    setattr(settings, setting, queue)
    yield queue
    purge_queues(queue)


@pytest.fixture
def unconsumed_queue(settings):
    """Send generation tasks to a queue no worker reads (tests of charging alone), then drop them."""
    yield from _unconsumed(settings, "GENERATIONS_QUEUE", "unconsumed")


@pytest.fixture
def unconsumed_housekeeping_queue(settings):
    """Send housekeeping tasks (webhooks, balance crossings) to a queue no worker reads: a session
    worker an earlier test left running (`celery_worker`) would otherwise take them."""
    yield from _unconsumed(settings, "HOUSEKEEPING_QUEUE", "unconsumed-hk")


@pytest.fixture(scope="session")
def fake_openai():
    """A local server speaking the OpenAI images protocol (the only stand-in in the suite)."""
    from tests.fakes.openai_server import FakeOpenAIServer

    server = FakeOpenAIServer(api_key=OPENAI_TEST_KEY).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_stripe_server():
    """A local server speaking the few Stripe API endpoints the payment flows use (tests/fakes)."""
    from tests.fakes.stripe_server import FakeStripeServer

    server = FakeStripeServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake_stripe(fake_stripe_server, settings):
    """The hub sells credits, through the fake Stripe (reset for each test)."""
    fake_stripe_server.reset()
    settings.STRIPE_SECRET_KEY = fake_stripe_server.api_key
    settings.STRIPE_WEBHOOK_SECRET = fake_stripe_server.webhook_secret
    settings.STRIPE_API_BASE = fake_stripe_server.base_url
    return fake_stripe_server


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, fake_openai):
    """One real worker process for the session (tests using it need transactional_db).

    Catalog rows whose backend is `openai` reach the fake OpenAI server through the real adapter.
    """
    with django_db_blocker.unblock():
        purge_queues()
        worker = WorkerProcess(
            name="session", env_overrides={"OPENAI_BASE_URL": fake_openai.base_url, "OPENAI_API_KEY": OPENAI_TEST_KEY}
        ).start()
    yield worker
    worker.stop()


@pytest.fixture
def openai_model(db, fake_openai):
    """A second catalog model served by the `openai` adapter: one row, no code."""
    from generations.models import ImageModel

    fake_openai.reset()
    return ImageModel.objects.create(
        id="gpt-image-1",
        provider="openai",
        backend="openai",
        upstream_model="gpt-image-1",
        sizes=["1024x1024", "1536x1024"],
        qualities=["low", "medium", "high"],
        prices={"1K": {"low": 1, "medium": 3, "high": 6}},
        reference_image_limit=4,
    )


def fetch(api, url: str) -> bytes:
    """Download an image URL the API returned: served by the hub, or presigned S3."""
    if url.startswith("http://testserver/"):
        response = api.get(url.removeprefix("http://testserver"))
        assert response.status_code == 200
        return b"".join(response.streaming_content)
    import httpx

    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    return response.content
