"""`GET /generations/{id}/events` on the production web server (deploy/bin/web, gevent) with a
real worker: the generation's steps arrive as server-sent events as they happen, to its owner
only; a reconnect with Last-Event-ID resumes after it; a finished generation's stream ends at once."""

import base64
import json
import re
import threading
import time
import uuid

import httpx
import pytest

from generations.models import Generation
from tests.conftest import WebProcess, relays_partials, until
from tests.factories import make_key, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
BODY = {"model": "gpt-image-2", "size": "1024x1024", "quality": "low", "async": True}


def read_events(lines, *, until_event: str | None = None) -> list[dict]:
    """The events (and comments) of a stream's `lines`, each with the monotonic time it arrived,
    until the stream ends — or, with `until_event`, until that event arrived."""
    events, fields = [], {}
    for line in lines:
        if line.startswith(":"):
            events.append({"comment": line, "at": time.monotonic()})
        elif line:
            name, _, value = line.partition(": ")
            fields[name] = value
        elif fields:
            events.append({**fields, "data": json.loads(fields["data"]), "at": time.monotonic()})
            fields = {}
            if events[-1]["event"] == until_event:
                break
    return events


def unsigned(body: dict) -> dict:
    """`body` without the query strings of its presigned image URLs."""
    return json.loads(re.sub(r"\?X-Amz-[^\"]*", "", json.dumps(body)))


def named(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["id"], e["event"]) for e in events if "event" in e]


@pytest.fixture(scope="module")
def web(celery_worker):
    process = WebProcess().start()
    yield process
    process.stop()


@pytest.fixture
def owner(web):
    user = make_user(credits=100)
    return httpx.Client(base_url=f"{web.base_url}/api/v1", headers={"Authorization": f"Bearer {make_key(user)}"})


def submit(client: httpx.Client, prompt: str) -> str:
    response = client.post("/images/generations", json={**BODY, "prompt": prompt})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_streams_a_generation_from_queued_to_succeeded(owner):
    generation_id = submit(owner, "a lighthouse [sleep:3]")
    with owner.stream("GET", f"/generations/{generation_id}/events", headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        events = read_events(r.iter_lines())
    assert named(events) == [("1", "generation.queued"), ("2", "generation.started"), ("3", "generation.succeeded")]
    started, succeeded = (e for e in events if e.get("event") in ("generation.started", "generation.succeeded"))
    assert started["data"]["status"] == "running"
    assert "queue_position" in events[0]["data"]  # the queued event's data: the generation as GET has it
    assert succeeded["at"] - started["at"] > 2  # sent as it happened, not at the end
    # the generation as GET has it (but for the image URLs' signatures, which carry the second signed)
    assert unsigned(succeeded["data"]) == unsigned(owner.get(f"/generations/{generation_id}").json())


def test_only_its_owner_sees_the_stream(owner, web):
    generation_id = submit(owner, "a private lighthouse")
    stranger = {"Authorization": f"Bearer {make_key(make_user(credits=1))}", "Accept": "text/event-stream"}
    answer = httpx.get(f"{web.base_url}/api/v1/generations/{generation_id}/events", headers=stranger)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "notFound"
    anonymous = httpx.get(f"{web.base_url}/api/v1/generations/{generation_id}/events")
    assert anonymous.status_code == 401


def test_resumes_after_last_event_id(owner):
    generation_id = submit(owner, "a resumed lighthouse [sleep:2]")
    url = f"/generations/{generation_id}/events"
    with owner.stream("GET", url) as r:
        first = read_events(r.iter_lines(), until_event="generation.started")
    assert named(first)[-1] == ("2", "generation.started")
    with owner.stream("GET", url, headers={"Last-Event-ID": "2"}) as r:
        rest = read_events(r.iter_lines())
    assert named(rest) == [("3", "generation.succeeded")]


def test_a_finished_generations_stream_sends_its_end_at_once(owner):
    generation_id = submit(owner, "a quick lighthouse")
    assert _until_finished(owner, generation_id)
    started = time.monotonic()
    with owner.stream("GET", f"/generations/{generation_id}/events") as r:
        events = read_events(r.iter_lines())
    assert time.monotonic() - started < 6  # not after the 10 s keep-alive (HUB_STREAM_KEEPALIVE_SECONDS)
    assert named(events) == [("1", "generation.queued"), ("2", "generation.started"), ("3", "generation.succeeded")]
    with owner.stream("GET", f"/generations/{generation_id}/events", headers={"Last-Event-ID": "3"}) as r:
        assert read_events(r.iter_lines()) == []


def test_a_canceled_generations_stream_ends_with_its_cancel(owner):
    generation_id = submit(owner, "a canceled lighthouse [sleep:4]")
    with owner.stream("GET", f"/generations/{generation_id}/events") as r:
        lines = r.iter_lines()
        events = read_events(lines, until_event="generation.started")
        assert owner.post(f"/generations/{generation_id}/cancel").status_code == 200
        events += read_events(lines)
    assert named(events)[-1] == ("3", "generation.canceled")
    assert events[-1]["data"]["status"] == "canceled"


def _until_finished(client: httpx.Client, generation_id: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(f"/generations/{generation_id}").json()["status"] in ("succeeded", "failed", "canceled"):
            return True
        time.sleep(0.2)
    return False


@relays_partials
def test_a_streamed_generations_partials_come_between_started_and_succeeded(owner):
    """A generation streamed with partial_images: its events stream (another connection, the
    production gevent web) shows each partial as `generation.partial_image`, without an id."""
    prompt = f"a lighthouse {uuid.uuid4().hex} [sleep:4]"
    body = {**BODY, "async": False, "stream": True, "partial_images": 2, "n": 2, "prompt": prompt}
    streamed = threading.Thread(target=lambda: owner.post("/images/generations", json=body, timeout=60))
    streamed.start()
    assert until(lambda: Generation.objects.filter(prompt=prompt).exists(), timeout=10)
    generation_id = Generation.objects.get(prompt=prompt).pk
    with owner.stream("GET", f"/generations/{generation_id}/events", timeout=60) as response:
        events = [e for e in read_events(response.iter_lines()) if "event" in e]
    streamed.join(30)
    names = [e["event"] for e in events]
    assert names == [
        "generation.queued",
        "generation.started",
        *["generation.partial_image"] * 4,
        "generation.succeeded",
    ]
    partials = [e for e in events if e["event"] == "generation.partial_image"]
    assert all("id" not in e for e in partials)  # live only: nothing to resume
    assert [(e["data"]["image_index"], e["data"]["partial_image_index"]) for e in partials] == [
        (0, 0),
        (1, 0),
        (0, 1),
        (1, 1),
    ]
    data = partials[0]["data"]
    assert set(data) == {
        "generation_id",
        "image_index",
        "partial_image_index",
        "b64_json",
        "size",
        "output_format",
        "created_at",
    }
    assert (data["generation_id"], data["size"], data["output_format"]) == (generation_id, "1024x1024", "png")
    assert base64.b64decode(data["b64_json"]).startswith(b"\x89PNG")
    assert events[-1]["at"] - partials[0]["at"] > 1.5  # as they came
