"""The fake provider holds each API key to a provider's limits (calls in flight, images per
minute: 429 rate_limit_exceeded with Retry-After) and can make one key answer 500 — what the
hub's upstream budgets and circuit breaker are tested against."""

import threading

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAIServer

BODY = {"model": "gpt-image-1", "prompt": "p", "size": "64x64", "n": 1}


@pytest.fixture
def fake():
    with FakeOpenAIServer(api_key="sk-main-0000") as server:
        yield server


def post(fake, key: str, **body) -> httpx.Response:
    return httpx.post(
        f"{fake.base_url}/images/generations",
        json={**BODY, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_a_key_over_its_calls_in_flight_gets_429_with_retry_after(fake):
    fake.key("sk-limited-1", concurrency=2).plan("slow", seconds=0.5, times=3)
    responses = []
    threads = [threading.Thread(target=lambda: responses.append(post(fake, "sk-limited-1"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.status_code for r in responses) == [200, 200, 429]
    (limited,) = [r for r in responses if r.status_code == 429]
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert limited.headers["Retry-After"] == "1"
    assert fake.key_stats("sk-limited-1").max_in_flight == 2
    assert fake.key_statuses("sk-limited-1") == {200: 2, 429: 1}
    assert post(fake, "sk-main-0000").status_code == 200  # the other key is not held to it


def test_a_key_over_its_images_per_minute_gets_429_until_the_window_frees(fake):
    fake.key("sk-ipm-1", images_per_minute=3, retry_after_ms=True)
    assert post(fake, "sk-ipm-1", n=2).status_code == 200
    refused = post(fake, "sk-ipm-1", n=2)
    assert refused.status_code == 429
    assert "images per minute" in refused.json()["error"]["message"]
    assert 59 <= int(refused.headers["Retry-After"]) <= 60
    assert 58_000 < int(refused.headers["retry-after-ms"]) <= 60_000
    assert post(fake, "sk-ipm-1", n=1).status_code == 200  # what still fits passes
    assert [r.behaviour for r in fake.requests] == ["ok", "key_429", "ok"]


def test_a_failing_key_answers_500_until_switched_back(fake):
    fake.key("sk-broken-1", failing=500)
    fake.plan("400")  # a refused request does not use up the plan
    response = post(fake, "sk-broken-1")
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert post(fake, "sk-main-0000").status_code == 400
    fake.key("sk-broken-1", failing=None)
    assert post(fake, "sk-broken-1").status_code == 200


def test_keys_are_scripted_over_http_from_another_process(fake):
    assert httpx.post(f"{fake.root_url}/_fake/key", json={"key": "sk-remote-1", "failing": 503}).status_code == 200
    assert post(fake, "sk-remote-1").status_code == 503
    assert httpx.post(f"{fake.root_url}/_fake/key", json={"key": "k", "colour": 1}).status_code == 400
    assert post(fake, "sk-unknown-1").status_code == 401  # only configured keys join api_key
