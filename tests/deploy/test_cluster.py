"""A small cluster without containers: two web processes, two workers (which also run the
periodic sweep, one per period between them), a Redis of the test's own, the run's PostgreSQL
and S3 server — processes that share nothing but those services. Under load, one web process and
one worker are SIGKILLed and Redis is restarted; every generation still ends final (the surviving
worker sweeps on alone), the credits match, hub_reconcile is clean, and the surviving web process
answers throughout."""

import logging
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Sum

from billing.models import CreditAccount
from generations.models import FINISHED, Generation
from tests.conftest import WebProcess, WorkerProcess, die_with_parent, free_port, until
from tests.deploy.containers import unavailable
from tests.factories import make_key, make_user
from tests.reconcile import assert_reconciled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.slow, pytest.mark.timeout(300)]
logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise

CREDITS = 100_000
CLIENTS = 8
LOAD_SECONDS = 21
# Fast recovery, so the test takes seconds: leases lapse in 3 s, the workers sweep every second.
FAST = {
    "GENERATION_LEASE_SECONDS": "3",
    "SWEEPER_INTERVAL_SECONDS": "1",
    "WORKER_SWEEPS": "true",
    "GENERATION_RESEND_AFTER_SECONDS": "5",
}


class RedisServer:
    """A redis-server of the test's own (on its own port), restartable; its append-only file
    keeps the queues across a restart, as a production broker's would."""

    def __init__(self, data_dir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = None

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
            + ["--dir", str(self.data_dir), "--logfile", str(self.data_dir / "redis.log")],
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        assert until(lambda: _pings(client), timeout=10), "redis-server did not start"
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SHUTDOWN: flushes the append-only file
            self.proc.wait(10)

    def restart(self, *, down_for: float) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


def _pings(client) -> bool:
    import redis

    try:
        return client.ping()
    except redis.RedisError:
        return False


class Load:
    """CLIENTS threads sending sync and async generations, each to its own web process until
    that one stops answering, then to the other."""

    def __init__(self, webs: list[str], key: str):
        self.webs = webs
        self.headers = {"Authorization": f"Bearer {key}"}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: list[tuple[float, str, str]] = []  # (time, web, "200" / "202" / "500" / error name)
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(CLIENTS)]

    def start(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(90)

    def _client(self, index: int) -> None:
        rng = random.Random(index)
        web = self.webs[index % len(self.webs)]
        with httpx.Client(timeout=60) as http:
            while not self.stop.is_set():
                body = {"model": "gpt-image-2", "prompt": f"cluster [sleep:{rng.choice((0.5, 1, 2))}]", "n": 1}
                if rng.random() < 0.5:
                    body["async"] = True
                try:
                    response = http.post(f"{web}/api/v1/images/generations", json=body, headers=self.headers)
                    outcome = str(response.status_code)
                    if response.status_code == 200 and response.json()["status"] != "succeeded":
                        outcome = f"200 {response.json()['status']}"
                    if response.status_code == 202 and not response.json().get("poll_url"):
                        outcome = "202 without poll_url"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                    web = self.webs[(self.webs.index(web) + 1) % len(self.webs)]  # try the other one
                    time.sleep(0.1)
                with self.lock:
                    self.outcomes.append((time.monotonic(), web, outcome))


class Prober:
    """Asks one web process for /healthz and /api/v1/models every 100 ms; every failure is kept."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.stop = threading.Event()
        self.answered = 0
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._probe, daemon=True)

    def start(self) -> "Prober":
        self.thread.start()
        return self

    def join(self) -> None:
        self.stop.set()
        self.thread.join(30)

    def _probe(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            while not self.stop.is_set():
                for path in ("/healthz", "/api/v1/models"):
                    try:
                        status = http.get(path).status_code
                        if status == 200:
                            self.answered += 1
                        else:
                            self.failures.append(f"{path}: {status}")
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{path}: {type(exc).__name__}")
                self.stop.wait(0.1)


@pytest.fixture
def cluster_services():
    if connection.vendor != "postgresql" or not settings.USE_S3:
        unavailable("the cluster test needs PostgreSQL and an S3 server (deploy/test.sh starts one)")
    if shutil.which("redis-server") is None:
        unavailable("the cluster test starts its own redis-server, which is not installed")


def test_cluster_survives_a_killed_web_a_killed_worker_and_a_redis_restart(cluster_services):
    user = make_user(credits=CREDITS, account_type="PRO")
    key = make_key(user)
    redis_server = RedisServer(Path(settings.VAR_DIR) / f"cluster-redis-{os.getpid()}").start()
    env = {"REDIS_URL": redis_server.url, **FAST}
    processes = []
    try:
        webs = [WebProcess(env_overrides=env).start() for _ in range(2)]
        workers = [WorkerProcess(name=f"cluster{i}", concurrency=20, env_overrides=env).start() for i in range(2)]
        processes += webs + workers
        victim_web, survivor = webs
        victim_worker = workers[0]

        prober = Prober(survivor.base_url).start()
        load = Load([w.base_url for w in webs], key).start()
        started = time.monotonic()
        events = {}
        for at, name, action in (
            (5, "web killed", lambda: os.killpg(victim_web.proc.pid, signal.SIGKILL)),
            (10, "worker killed", lambda: os.killpg(victim_worker.proc.pid, signal.SIGKILL)),
            (15, "redis restarted", lambda: redis_server.restart(down_for=1.0)),
        ):
            time.sleep(max(started + at - time.monotonic(), 0))
            action()
            events[name] = time.monotonic()
        time.sleep(max(started + LOAD_SECONDS - time.monotonic(), 0))
        load.join()
        prober.join()

        # Every generation ends final: the killed worker's attempts are taken over once their
        # leases lapse, messages the broker restart lost are sent again by the sweeper.
        settled = until(lambda: not Generation.objects.exclude(status__in=FINISHED).exists(), timeout=90, interval=0.5)
        unfinished = list(Generation.objects.exclude(status__in=FINISHED).values_list("id", "status", "attempts"))
        assert settled, f"unfinished: {unfinished}"
    finally:
        for process in processes:
            process.stop()
        redis_server.stop()

    generations = Generation.objects.all()
    outcomes = [o for _, _, o in load.outcomes]
    summary = {o: outcomes.count(o) for o in set(outcomes)}
    statuses = {s: generations.filter(status=s).count() for s in FINISHED}
    print(f"\nclient outcomes {summary}; generations {statuses}; re-run {generations.filter(attempts__gt=1).count()}")

    # Load ran through every fault: answers from the surviving web after each of them.
    for name, at in events.items():
        after = [o for t, web, o in load.outcomes if t > at + 1 and web == survivor.base_url and o in ("200", "202")]
        assert after, f"no answered generation after {name}"
    assert set(summary) <= {"200", "202", "500", "ConnectError", "RemoteProtocolError", "ReadError"}, summary
    assert generations.count() >= 50
    assert generations.filter(status="succeeded").count() >= 0.8 * generations.count()
    assert generations.filter(attempts__gt=1).exists(), "the killed worker was running nothing"
    # A failure is a refunded one with its reason, never a lost charge.
    for generation in generations.filter(status="failed"):
        assert generation.credits_refunded == generation.credits_requested, generation.id
        assert generation.error_code in ("queue_unavailable", "worker_lost", "timeout"), generation.error_code

    charged = generations.aggregate(requested=Sum("credits_requested"), refunded=Sum("credits_refunded"))
    balance = CreditAccount.objects.get(user=user).balance
    assert balance == CREDITS - charged["requested"] + charged["refunded"]
    assert_reconciled()

    # The broker restart reached the processes (their completion listeners reconnected)...
    assert "completion listener" in survivor.log_path.read_text()
    # ...and the surviving web process answered every probe, through every fault.
    assert prober.failures == [], prober.failures
    assert prober.answered > 100
