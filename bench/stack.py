"""A production-style hub on loopback, started for one benchmark and torn down after it.

PostgreSQL is the machine's server (a fresh `bench_<pid>` database, dropped at the end); Redis,
the S3-protocol server (moto) and the fake OpenAI provider are our own processes on free ports.
The hub runs through deploy/bin/* — the single source of the production commands — so the
bench measures whatever serving stack those scripts start today, with only HUB_BIND and the
environment chosen here. Every process gets its own session (one signal stops its whole tree)
and dies with us if we are killed (PR_SET_PDEATHSIG); `stop()` runs on exceptions and Ctrl-C.
"""

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable  # the bench's own processes: load generator, fake provider, S3 server
# The hub's processes run on a virtualenv with the hub's dependencies only, as the image installs
# them (`make bench` makes it): packages of the test and bench extras — cryptography, rich,
# aiohttp — are imported by the hub's libraries when present (django-storages, structlog, openai)
# and would count in its memory (~14, ~7 and ~14 MiB a process).
HUB_BIN = REPO / ".venv-hub" / "bin"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BUCKET = "hub-bench-images"
USER_EMAIL = "bench@example.com"
USER_CREDITS = 100_000_000
PROVIDER_KEY = "sk-bench"
# size auto: the fake provider answers PNGs of a chosen byte size, not of the size asked, and the
# worker drops an image of another size than the one asked (workers.runner).
BODY = {"model": "gpt-image-2", "prompt": "bench", "size": "auto", "quality": "low", "n": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def http(
    method: str, url: str, body: dict | None = None, headers: dict | None = None, timeout: float = 10
) -> tuple[int, dict]:
    """A small blocking JSON request (set-up and checks only; load goes through bench.loadgen)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def pg_connections() -> tuple[int, int]:
    """The shared server's max_connections and its client connections in use right now."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        limit = int(conn.execute("SHOW max_connections").fetchone()[0])
        used = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").fetchone()[0]
    return limit, used - 1  # not this connection


class Stack:
    def __init__(
        self,
        *,
        provider_latency: float,
        png_bytes: int,
        log_dir: Path,
        worker: bool = True,
        workers: int = 1,
        extra_env: dict[str, str] | None = None,
    ):
        self.provider_latency = provider_latency
        self.png_bytes = png_bytes
        self.log_dir = log_dir
        self.with_worker = worker
        # Generation worker processes, as replicas run them: each is deploy/bin/worker, its own
        # Celery node (`-n gen2@%h`…) and one event loop, so one core at most.
        self.workers = workers
        self.extra_env = extra_env or {}
        self.db_name = f"bench_{os.getpid()}"
        self.tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports = {name: free_port() for name in ("redis", "moto", "provider", "web")}
        self.base_url = f"http://127.0.0.1:{self.ports['web']}"
        self.provider_url = f"http://127.0.0.1:{self.ports['provider']}"
        self.key = ""
        self._db_created = False
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            # gunicorn's control socket defaults to ~/.gunicorn/gunicorn.ctl, shared by every gunicorn
            # of this user on the machine (test runs too); keep ours in the stack's own folder.
            "XDG_RUNTIME_DIR": str(self.tmp),
            "LANG": "C.UTF-8",
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.db_name}",
            "REDIS_URL": f"redis://127.0.0.1:{self.ports['redis']}/0",
            "AWS_STORAGE_BUCKET_NAME": BUCKET,
            "AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.ports['moto']}",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_S3_REGION_NAME": "us-east-1",
            "IMAGE_PROVIDER": "openai",
            "OPENAI_BASE_URL": self.provider_url + "/v1",
            "OPENAI_API_KEY": PROVIDER_KEY,
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "HUB_VAR_DIR": str(self.tmp / "var"),
            "HUB_ALLOW_LOCAL_PROVIDER": "true",
            "GENERATION_TIMEOUT_SECONDS": "800",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "HUB_BIND": f"127.0.0.1:{self.ports['web']}",
            "HUB_BIN": str(HUB_BIN),  # deploy/bin/* run their commands from it
            **self.extra_env,
        }

    # -- life cycle -----------------------------------------------------------------------------

    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        if not (HUB_BIN / "python").exists():
            raise RuntimeError(f"{HUB_BIN.parent} is missing: `make bench` makes it (the hub's dependencies only)")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._step("database", self._create_database)
        self._step("redis", self._start_redis)
        self._step("s3 (moto)", self._start_moto)
        self._step("fake provider", self._start_provider)
        self._step("migrate", lambda: self.run("migrate", [str(REPO / "deploy/bin/migrate")]))
        self._step("user and key", self._create_user)
        self._step("floor table", self._create_floor_table)
        self.procs["web"] = self.spawn("web", [str(REPO / "deploy/bin/web")], self.env)
        if self.with_worker:
            for name, node in self.worker_names():
                self.procs[name] = self.spawn(name, [str(REPO / "deploy/bin/worker"), "-n", node], self.env)
        self._step("web ready", self._wait_web)
        if self.with_worker:
            self._step("worker ready (one generation)", self._warm_up)

    def worker_names(self) -> list[tuple[str, str]]:
        """(process name, Celery node name) of each generation worker: worker, worker-2, …"""
        return [("worker", "gen@%h")] + [(f"worker-{i}", f"gen{i}@%h") for i in range(2, self.workers + 1)]

    def stop(self) -> None:
        workers = [name for name, _ in self.worker_names()]
        hub = [name for name in (*workers, "web") if name in self.procs]  # workers first, as before
        self._terminate(hub)
        self._terminate([name for name in self.procs if name not in hub])
        if self._db_created:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            self._db_created = False
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _terminate(self, names: list[str]) -> None:
        """SIGTERM each process group, give them 15 s together, then SIGKILL the groups still led."""
        for name in names:
            self._signal(self.procs[name], signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name in names:
            proc = self.procs.pop(name)
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"stack: {name} ignored SIGTERM for 15 s; killing its process group", file=sys.stderr)
                self._signal(proc, signal.SIGKILL)
                proc.wait()

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # the group we created with start_new_session
        except ProcessLookupError:
            pass

    def _step(self, what: str, action) -> None:
        started = time.monotonic()
        action()
        print(f"stack: {what} ok ({time.monotonic() - started:.1f} s)", file=sys.stderr, flush=True)

    # -- processes ------------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        with log:
            return subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def run(
        self, name: str, argv: list[str], check: bool = True, timeout: float = 600, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        """Run a one-off hub command with the hub's environment (plus `env`); its stderr goes to the log."""
        with open(self.log_dir / f"{name}.log", "ab") as log:
            done = subprocess.run(
                argv,
                cwd=REPO,
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                timeout=timeout,
            )
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}; see {self.log_dir / (name + '.log')}")
        return done

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(f"manage-{args[0]}", [str(HUB_BIN / "python"), "manage.py", *args], check=check)

    def pid(self, name: str) -> int | None:
        proc = self.procs.get(name)
        return proc.pid if proc else None

    def _wait(self, what: str, ready, timeout: float, watch: tuple[str, ...] = ()) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in watch:
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited while waiting for {what}; see {self.log_dir / (name + '.log')}")
            try:
                if ready():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")

    # -- services -------------------------------------------------------------------------------

    def _create_database(self) -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self._db_created = True

    def _start_redis(self) -> None:
        self.procs["redis"] = self.spawn(
            "redis",
            [
                "/usr/bin/redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.ports["redis"]),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
        )

        def pong() -> bool:
            with socket.create_connection(("127.0.0.1", self.ports["redis"]), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")

        self._wait("redis", pong, 20, watch=("redis",))

    def _start_moto(self) -> None:
        gunicorn = str(Path(PYTHON).parent / "gunicorn")
        self.procs["moto"] = self.spawn(
            "moto",
            [gunicorn, "bench.s3_app", "--bind", f"127.0.0.1:{self.ports['moto']}", "--workers", "1"]
            + ["--worker-class", "gthread", "--threads", "16", "--keep-alive", "75", "--no-control-socket"],
        )
        url = f"{self.env['AWS_S3_ENDPOINT_URL']}/{BUCKET}"

        def bucket() -> bool:  # moto does not check signatures: a bare PUT creates the bucket
            with urllib.request.urlopen(urllib.request.Request(url, method="PUT"), timeout=2) as resp:
                return resp.status == 200

        self._wait("moto bucket", bucket, 60, watch=("moto",))

    def _start_provider(self) -> None:
        self.procs["provider"] = self.spawn(
            "provider",
            [
                PYTHON,
                "-m",
                "bench.fake_provider",
                "--port",
                str(self.ports["provider"]),
                "--latency",
                str(self.provider_latency),
                "--png-bytes",
                str(self.png_bytes),
            ],
        )
        self._wait(
            "fake provider", lambda: http("GET", self.provider_url + "/_bench/stats")[0] == 200, 30, watch=("provider",)
        )

    def provider_stats(self) -> dict:
        return http("GET", self.provider_url + "/_bench/stats")[1]

    def provider_reset_peak(self) -> None:
        http("POST", self.provider_url + "/_bench/reset-peak")

    def _create_user(self) -> None:
        self.manage("hub_createuser", USER_EMAIL, "--credits", str(USER_CREDITS))
        self.key = self.manage("hub_createkey", USER_EMAIL).stdout.decode().strip().splitlines()[-1]

    def _create_floor_table(self) -> None:
        """The floor endpoint's own table (bench/floor.py): 10,000 rows, a unique index on digest."""
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE bench_floor (id bigserial PRIMARY KEY, digest varchar(64) NOT NULL UNIQUE,"
                " last_used_at timestamptz)"
            )
            conn.execute("INSERT INTO bench_floor (digest) SELECT md5(i::text) FROM generate_series(1, 10000) i")
            conn.execute("ANALYZE bench_floor")

    @property
    def db_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:5432/{self.db_name}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def _wait_web(self) -> None:
        self._wait(
            "GET /healthz", lambda: http("GET", self.base_url + "/healthz", timeout=2)[0] == 200, 60, watch=("web",)
        )

    def _warm_up(self) -> None:
        """One sync generation, which must reach the fake provider (not the built-in `local` one)."""
        before = self.provider_stats()["generations"]
        status, body = http(
            "POST", self.base_url + "/api/v1/images/generations", BODY, self.auth, timeout=self.provider_latency + 120
        )
        if status != 200:
            raise RuntimeError(f"warm-up generation answered {status}: {body}")
        if self.provider_stats()["generations"] <= before:
            raise RuntimeError(
                "the warm-up generation never reached the fake OpenAI provider: check how "
                "gpt-image-2 picks its backend (IMAGE_PROVIDER, catalog `backend`)"
            )
