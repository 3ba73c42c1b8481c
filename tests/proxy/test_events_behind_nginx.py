"""A generation's events stream behind a real proxy (Debian's nginx, its response buffering on as
by default, an 8 s idle read cut): the events arrive as they happen, not when the stream ends,
and the keep-alive comments (every HUB_STREAM_KEEPALIVE_SECONDS) carry the stream past the cut — as
they carry a streamed answer (`stream: true`) whose provider takes longer than the cut. Production's
times scaled down: a cut of 60 s, keep-alives every 10 s."""

import httpx
import pytest

from tests.api.test_generation_events import named, read_events
from tests.conftest import WebProcess
from tests.factories import make_key, make_user
from tests.proxy.conftest import nginx_in_front

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.slow]
PROXY_READ_TIMEOUT = 8
KEEPALIVE = 2
PROVIDER_SECONDS = 14


@pytest.fixture(scope="module")
def hub_behind_nginx(tmp_path_factory, celery_worker):
    """A web process behind nginx, for this module's tests (each makes its own user)."""
    web = WebProcess(env_overrides={"HUB_STREAM_KEEPALIVE_SECONDS": str(KEEPALIVE)}).start()
    try:
        directory = tmp_path_factory.mktemp("nginx")
        with nginx_in_front(directory, {"web": web.port}, read_timeout=PROXY_READ_TIMEOUT) as urls:
            yield urls["web"]
    finally:
        web.stop()


def test_events_arrive_live_through_a_buffering_proxy(hub_behind_nginx):
    auth = {"Authorization": f"Bearer {make_key(make_user(credits=10))}"}
    client = httpx.Client(base_url=f"{hub_behind_nginx}/api/v1", headers=auth, timeout=60)
    body = {"model": "gpt-image-2", "size": "1024x1024", "quality": "low", "async": True}
    created = client.post("/images/generations", json={**body, "prompt": f"a lighthouse [sleep:{PROVIDER_SECONDS}]"})
    assert created.status_code == 202, created.text
    url = f"/generations/{created.json()['id']}/events"
    with client.stream("GET", url, headers={"Accept": "text/event-stream"}) as response:
        events = read_events(response.iter_lines())
    assert named(events) == [("1", "generation.queued"), ("2", "generation.started"), ("3", "generation.succeeded")]
    started = next(i for i, e in enumerate(events) if e.get("event") == "generation.started")
    # the started event came when it happened, then keep-alives while the provider worked
    assert events[-1]["at"] - events[started]["at"] > PROVIDER_SECONDS - 5
    waits = [e["at"] for e in events[started:]]
    assert max(b - a for a, b in zip(waits, waits[1:], strict=False)) < PROXY_READ_TIMEOUT - 2
    assert any("comment" in e for e in events[started:-1])


def test_a_streamed_generation_outlasts_the_proxys_cut(hub_behind_nginx):
    auth = {"Authorization": f"Bearer {make_key(make_user(credits=10))}"}
    # no partial images: nothing but keep-alives for 14 s (test_behind_nginx streams partials)
    body = {"model": "gpt-image-2", "size": "1024x1024", "quality": "low", "stream": True}
    body["prompt"] = f"a lighthouse [sleep:{PROVIDER_SECONDS}]"
    url = f"{hub_behind_nginx}/api/v1/images/generations"
    with httpx.stream("POST", url, json=body, headers=auth, timeout=60) as response:
        assert response.status_code == 200  # not the proxy's 504, though the provider took longer than its cut
        events = read_events(response.iter_lines())
    assert [e.get("event") for e in events if "event" in e] == ["image_generation.completed"]
    assert events[-1]["data"]["b64_json"]
    assert sum("comment" in e for e in events) >= PROVIDER_SECONDS // (2 * KEEPALIVE)  # every 2 s, some late
