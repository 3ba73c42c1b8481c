"""Clients that hang up mid-wait or mid-stream, on the production web server (deploy/bin/web,
gevent): the web process drops their waiters at once — 200 of them leave the waits-in-flight and
open-streams gauges at 0 within a second or two, long before their generations finish — and the
generations go on: charged once, finished, retrievable, their webhooks delivered, and a retry with
the same Idempotency-Key answers the same generation without a second charge."""

import json
import socket
import time
import uuid

import httpx
import pytest
from django.conf import settings
from django.test import override_settings

from billing.models import CreditAccount, LedgerEntry
from generations.models import Generation, GenerationStatus, WebhookDelivery
from tests.api.test_concurrent_waits import _finish
from tests.conftest import WebProcess, WorkerProcess, until
from tests.factories import make_key, make_user
from tests.images import image_bytes
from tests.test_observability import samples, value
from tests.webhooks.receiver import Receiver

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.worker,
    pytest.mark.slow,
    pytest.mark.capacity,
    pytest.mark.timeout(600),
    # 200 clients' webhooks at once: the production configuration's, not one SQLite writer's
    pytest.mark.skipif(not settings.REDIS_URL, reason="measures the production configuration (PostgreSQL, Redis)"),
]
SYNC_WAITS, IMAGE_STREAMS, EVENT_STREAMS = 160, 20, 20
CLIENTS = SYNC_WAITS + IMAGE_STREAMS + EVENT_STREAMS
TOKEN = uuid.uuid4().hex
BODY = {"model": "gpt-image-2", "size": "1024x1024", "quality": "low", "webhook_events": ["completed"]}


def _request(port: int, method: str, path: str, headers: dict, body: bytes = b"") -> socket.socket:
    """A raw HTTP/1.1 request left waiting for its answer: the client hangs up by closing it."""
    sock = socket.create_connection(("127.0.0.1", port))
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {text}" for name, text in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return sock


def _gauges(client: httpx.Client) -> tuple[float, float]:
    metrics = samples(client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text)
    return value(metrics, "hub_sync_waits_in_flight"), value(metrics, "hub_event_streams_open")


def test_two_hundred_clients_that_leave_are_dropped_at_once_and_their_generations_go_on(unconsumed_queue):
    user = make_user(credits=10 * CLIENTS)
    raw = make_key(user)
    auth = {"Authorization": f"Bearer {raw}"}
    housekeeping = f"leave-hk-{uuid.uuid4().hex[:8]}"
    queues = {"HUB_GENERATIONS_QUEUE": unconsumed_queue, "HUB_HOUSEKEEPING_QUEUE": housekeeping}
    web = WebProcess(env_overrides={**queues, "HUB_METRICS_TOKEN": TOKEN}).start()
    deliverer = WorkerProcess(name="leave-hk", queues=housekeeping, concurrency=50, env_overrides=queues).start()
    with Receiver() as receiver, override_settings(HOUSEKEEPING_QUEUE=housekeeping):
        try:
            body = {**BODY, "webhook_url": receiver.url}
            client = httpx.Client(base_url=web.base_url, timeout=60)
            watched = [
                client.post("/api/v1/images/generations", json={**body, "prompt": f"w{i}", "async": True}, headers=auth)
                for i in range(EVENT_STREAMS)
            ]
            watched_ids = [answer.json()["id"] for answer in watched]
            sockets = [
                _request(
                    web.port,
                    "POST",
                    "/api/v1/images/generations",
                    {**auth, "Content-Type": "application/json", "Idempotency-Key": f"leave-{i}"},
                    json.dumps({**body, "prompt": f"s{i}", "stream": i >= SYNC_WAITS}).encode(),
                )
                for i in range(SYNC_WAITS + IMAGE_STREAMS)
            ]
            sockets += [_request(web.port, "GET", f"/api/v1/generations/{gid}/events", auth) for gid in watched_ids]
            assert until(lambda: _gauges(client) == (SYNC_WAITS, IMAGE_STREAMS + EVENT_STREAMS), timeout=60), _gauges(
                client
            )

            left_at = time.monotonic()
            for sock in sockets:
                sock.close()
            assert until(lambda: _gauges(client) == (0, 0), timeout=10, interval=0.05), _gauges(client)
            dropped_in = time.monotonic() - left_at
            generations = Generation.objects.filter(owner=user)
            assert generations.count() == CLIENTS
            assert set(generations.values_list("status", flat=True)) == {GenerationStatus.QUEUED}  # untouched

            data = image_bytes(size=(8, 8))
            for generation_id in generations.values_list("pk", flat=True):
                _finish(generation_id, data)
            for generation_id in generations.values_list("pk", flat=True):
                answer = client.get(f"/api/v1/generations/{generation_id}", headers=auth).json()
                assert answer["status"] == "succeeded" and len(answer["images"]) == 1, answer
            delivered = WebhookDelivery.objects.filter(generation__owner=user, event="completed", status="succeeded")
            assert until(lambda: delivered.count() == CLIENTS, timeout=240), deliverer.output()[-3000:]
            assert sorted(json.loads(r.body)["data"]["id"] for r in receiver.received) == sorted(
                generations.values_list("pk", flat=True)
            )

            balance = CreditAccount.objects.get(user=user).balance
            slowest_retry = 0.0
            for i in range(SYNC_WAITS):
                sent_at = time.monotonic()
                retry = client.post(
                    "/api/v1/images/generations",
                    json={**body, "prompt": f"s{i}", "stream": False},
                    headers={**auth, "Idempotency-Key": f"leave-{i}"},
                )
                assert retry.status_code == 200, retry.text
                assert retry.json()["id"] == generations.get(prompt=f"s{i}").pk
                slowest_retry = max(slowest_retry, time.monotonic() - sent_at)
            web_output = web.output()
        finally:
            deliverer.stop()
            web.stop()

    print(f"\n{CLIENTS} clients left; the gauges were at 0 after {dropped_in:.2f} s")
    assert dropped_in < 3, dropped_in
    assert slowest_retry < 2.5, slowest_retry  # answered from the finished row, not after the poller's round
    charged = sum(generation.credits_consumed for generation in generations)
    assert CreditAccount.objects.get(user=user).balance == balance == 10 * CLIENTS - charged
    charges = LedgerEntry.objects.filter(generation_id__in=list(generations.values_list("pk", flat=True)))
    assert charges.count() == CLIENTS  # one each, no refund, no second charge
    assert "Traceback" not in web_output, web_output[-3000:]
