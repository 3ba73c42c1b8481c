"""`GET /generations/{id}/events` on the production web server (deploy/bin/web, gevent) with a
real worker: the generation's steps arrive as server-sent events as they happen, to its owner
only; a reconnect with Last-Event-ID resumes after it; a finished generation's stream ends at once."""

import json
import re
import time

import httpx
import pytest

from tests.conftest import WebProcess
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
    assert time.monotonic() - started < 2
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
