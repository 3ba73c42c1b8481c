"""A sync wait behind a real proxy (Debian's nginx) that cuts a read idle for 8 s, as ingress-nginx
and AWS's load balancers cut at 60 s: with HUB_SYNC_WAIT_SECONDS below the cut the client gets its
202 and poll_url in time; without it the proxy answers 504 — and the generation still goes on,
charged once, retrievable by the client that was cut off. A streamed generation (`stream: true`
with `partial_images`) gets its partial images through the proxy as the provider makes them, and
its end. The times are production's scaled down (a cut of 60 s, keep-alives every 10 s): the
tests wait seconds, not minutes."""

import base64
import threading
import time
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from billing.models import CreditAccount
from generations.models import Generation
from tests.api.test_generation_events import read_events
from tests.conftest import WebProcess, WorkerProcess, relays_partials, until
from tests.factories import make_key, make_user
from tests.proxy.conftest import nginx_in_front
from tests.reconcile import assert_reconciled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
PROXY_READ_TIMEOUT = 8
SYNC_WAIT = 4
KEEPALIVE = 2  # HUB_STREAM_KEEPALIVE_SECONDS, below the cut
SYNC_PROVIDER_SECONDS = 16  # twice the cut: a wait the proxy cuts
STREAM_PROVIDER_SECONDS = 30
BODY = {"model": "gpt-image-2", "size": "1024x1024", "quality": "low", "n": 1}


@pytest.fixture(scope="module")
def hubs_behind_nginx(django_db_setup, tmp_path_factory):
    """Two web processes (one with HUB_SYNC_WAIT_SECONDS below the proxy's cut, one without) and a
    worker on a private queue, each web behind its own nginx server: {"capped": URL, "uncapped": URL}.
    Started once for this module's tests (each test makes its own user; the worker is idle between)."""
    common = {"HUB_GENERATIONS_QUEUE": f"proxy-{uuid.uuid4().hex[:8]}", "HUB_STREAM_KEEPALIVE_SECONDS": str(KEEPALIVE)}
    capped = WebProcess(env_overrides={**common, "HUB_SYNC_WAIT_SECONDS": str(SYNC_WAIT)})
    uncapped = WebProcess(env_overrides=common)
    worker = WorkerProcess(name="proxy", queues=common["HUB_GENERATIONS_QUEUE"], env_overrides=common)
    capped.start(), uncapped.start(), worker.start()
    try:
        upstreams = {"capped": capped.port, "uncapped": uncapped.port}
        directory = tmp_path_factory.mktemp("nginx")
        with nginx_in_front(directory, upstreams, read_timeout=PROXY_READ_TIMEOUT) as urls:
            yield urls
    finally:
        capped.stop(), uncapped.stop(), worker.stop()


@pytest.mark.slow
def test_a_long_sync_generation_through_a_proxy_that_cuts_idle_reads(hubs_behind_nginx):
    user = make_user(credits=100)
    auth = {"Authorization": f"Bearer {make_key(user)}"}
    balance = CreditAccount.objects.get(user=user).balance
    answers = {}

    def post(name: str) -> None:
        started = time.monotonic()
        body = {**BODY, "prompt": f"{name} lighthouse [sleep:{SYNC_PROVIDER_SECONDS}]"}
        response = httpx.post(
            f"{hubs_behind_nginx[name]}/api/v1/images/generations", json=body, headers=auth, timeout=90
        )
        answers[name] = (response, time.monotonic() - started)

    threads = [threading.Thread(target=post, args=(name,)) for name in ("capped", "uncapped")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)

    capped, capped_seconds = answers["capped"]
    assert capped.status_code == 202, capped.text  # within the hub's wait, before the proxy's cut
    assert SYNC_WAIT <= capped_seconds < PROXY_READ_TIMEOUT
    generation = capped.json()
    assert generation["status"] in ("queued", "running")
    poll_url = generation["poll_url"]

    uncapped, uncapped_seconds = answers["uncapped"]
    assert uncapped.status_code == 504  # the proxy's, not the hub's
    assert PROXY_READ_TIMEOUT <= uncapped_seconds < SYNC_PROVIDER_SECONDS

    def succeeded() -> bool:  # polled through the proxy (poll_url names the host nginx sent)
        url = hubs_behind_nginx["capped"] + urlsplit(poll_url).path
        return httpx.get(url, headers=auth, timeout=10).json()["status"] == "succeeded"

    assert until(succeeded, timeout=60)
    # the cut-off client's generation went on too, charged once, and stays retrievable
    assert until(
        lambda: set(Generation.objects.filter(owner=user).values_list("status", flat=True)) == {"succeeded"}, timeout=30
    )
    generations = list(Generation.objects.filter(owner=user))
    assert len(generations) == 2
    cut_off = next(g for g in generations if g.pk != generation["id"])
    assert (
        httpx.get(f"{hubs_behind_nginx['uncapped']}/api/v1/generations/{cut_off.pk}", headers=auth).status_code == 200
    )
    charged = sum(g.credits_requested for g in generations)
    assert CreditAccount.objects.get(user=user).balance == balance - charged
    assert_reconciled()


@pytest.mark.slow
@relays_partials
def test_a_long_streamed_generation_gets_its_partials_through_the_proxy(hubs_behind_nginx):
    """The provider takes 30 s and makes 2 partial images (at 10 and 20 s): each passes the proxy
    when it is made, the keep-alives carry the stream past its 8 s cut, and the end comes."""
    user = make_user(credits=100)
    auth = {"Authorization": f"Bearer {make_key(user)}"}
    balance = CreditAccount.objects.get(user=user).balance
    prompt = f"streamed lighthouse [sleep:{STREAM_PROVIDER_SECONDS}]"
    body = {**BODY, "prompt": prompt, "stream": True, "partial_images": 2}
    started = time.monotonic()
    url = f"{hubs_behind_nginx['uncapped']}/api/v1/images/generations"
    with httpx.stream("POST", url, json=body, headers=auth, timeout=90) as response:
        assert response.status_code == 200  # not the proxy's 504
        events = read_events(response.iter_lines())
    named = [e for e in events if "event" in e]
    assert [e["event"] for e in named] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    first, second, end = (e["at"] - started for e in named)
    third = STREAM_PROVIDER_SECONDS / 3
    assert third - 2 < first < 2 * third - 2 < second < STREAM_PROVIDER_SECONDS - 5 < end  # each when it was made
    assert base64.b64decode(named[-1]["data"]["b64_json"]).startswith(b"\x89PNG")
    waits = [e["at"] for e in events]
    assert max(b - a for a, b in zip(waits, waits[1:], strict=False)) < PROXY_READ_TIMEOUT
    generation = Generation.objects.get(owner=user)
    assert generation.status == "succeeded" and generation.images.count() == 1
    assert CreditAccount.objects.get(user=user).balance == balance - generation.credits_requested
    assert_reconciled()
