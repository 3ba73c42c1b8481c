"""The bench's fake provider holds a key to its limits, as the upstream scenarios rely on: over its
calls in flight a 429 with Retry-After, a switch that makes it answer 500, and /_bench/stats
showing each key's answers and calls in flight."""

import concurrent.futures
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT, free_port, until

KEY = "sk-bench-limited"


def post(url: str, body: dict, key: str = KEY) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def stats(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/_bench/stats", timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def provider():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_provider", "--port", str(port), "--latency", "0.5"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return bool(stats(base))
        except OSError:
            return False

    assert until(up, timeout=20)
    yield base
    proc.terminate()
    proc.wait()


def test_a_key_over_its_calls_in_flight_is_answered_429_and_a_failing_key_500(provider):
    assert post(f"{provider}/_bench/key", {"key": KEY, "concurrency": 2}) == 200
    body = {"model": "gpt-image-2", "prompt": "p", "n": 1}
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        statuses = sorted(pool.map(lambda _: post(f"{provider}/v1/images/generations", body), range(3)))
    assert statuses == [200, 200, 429]
    seen = stats(provider)["keys"][KEY]
    assert (seen["statuses"], seen["peak_in_flight"], seen["in_flight"]) == ({"200": 2, "429": 1}, 2, 0)

    post(f"{provider}/_bench/key", {"key": KEY, "failing": 500})
    assert post(f"{provider}/v1/images/generations", body) == 500
    assert stats(provider)["keys"][KEY]["failing"] == 500
    post(f"{provider}/_bench/key", {"key": KEY, "failing": None})
    assert post(f"{provider}/v1/images/generations", body) == 200
