"""A thousand open events streams in one production web process (deploy/bin/web, gevent) hold no
thread and no database connection each, stay under 100 MiB above idle (issue 33's target), and are
each woken by their generation's start and finish."""

import asyncio
import os
import threading
import time

import httpx
import pytest
from django.db import connection

from generations.models import Generation
from tests.api.test_concurrent_waits import _connections, _finish, _threads
from tests.api.test_generation_events import BODY
from tests.conftest import PATIENT_WEB, WebProcess, database_url_for_subprocess, until
from tests.factories import make_key, make_user
from tests.images import image_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.slow, pytest.mark.capacity]
STREAMS = 1000
GENERATIONS = 10
POOL_SIZE = 4
# Streams being opened at once (all STREAMS stay open). A thousand requests arriving in the same
# instant wait together for the pool's 4 connections, and what they hold meanwhile stays in the
# process's heap: 99 MiB above idle with the ORM's own row building (HUB_FAST_PATH_ORM_ROWS=false,
# quiet machine), 64 MiB with the fast path; opened 100 at a time, 59 and 52 MiB.
OPENING = 100


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kib / 1024


async def _watch(
    client: httpx.AsyncClient, generation_id: str, opened: threading.Event, counter: list, opening: asyncio.Semaphore
) -> list[str]:
    """The event names of one stream; counts it as open once its first event arrived (and makes way
    for the next stream to open)."""
    names = []
    await opening.acquire()
    async with client.stream("GET", f"/api/v1/generations/{generation_id}/events") as response:
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                names.append(line.removeprefix("event: "))
                if len(names) == 1:
                    opening.release()
                    counter[0] += 1
                    if counter[0] == STREAMS:
                        opened.set()
    return names


@pytest.mark.skipif(connection.vendor != "postgresql", reason="counts PostgreSQL connections")
def test_a_thousand_open_streams_hold_no_thread_no_connection_and_little_memory(unconsumed_queue):
    user = make_user(credits=10 * GENERATIONS)
    auth = {"Authorization": f"Bearer {make_key(user)}"}
    name = f"hub-web-streams-{os.getpid()}"
    web = WebProcess(
        env_overrides={
            "DATABASE_URL": f"{database_url_for_subprocess()}?application_name={name}",
            "HUB_GENERATIONS_QUEUE": unconsumed_queue,  # no worker: the test starts and finishes them
            "DATABASE_POOL_MAX_SIZE": str(POOL_SIZE),
            **PATIENT_WEB,  # some first reads came late even opening 100 at a time
        }
    ).start()
    try:
        [pid] = web.worker_pids()
        with httpx.Client(base_url=web.base_url, headers=auth, timeout=30) as client:
            ids = [
                client.post("/api/v1/images/generations", json={**BODY, "prompt": f"p{i}"}).json()["id"]
                for i in range(GENERATIONS)
            ]
            with client.stream("GET", f"/api/v1/generations/{ids[0]}/events") as warm:  # imports, listener
                next(warm.iter_lines())
        idle_rss, idle_threads = _rss_mib(pid), _threads(pid)

        opened, results = threading.Event(), {}

        async def watch_all():  # the clients, in a thread of their own: the test reads the database
            limits = httpx.Limits(max_connections=STREAMS + 10)
            async with httpx.AsyncClient(base_url=web.base_url, headers=auth, timeout=120, limits=limits) as client:
                counter, opening = [0], asyncio.Semaphore(OPENING)
                streams = [_watch(client, ids[i % GENERATIONS], opened, counter, opening) for i in range(STREAMS)]
                results["names"] = await asyncio.gather(*streams)

        clients = threading.Thread(target=asyncio.run, args=(watch_all(),))
        clients.start()
        assert opened.wait(90)
        time.sleep(1)
        rss_above_idle, more_threads, connections = (
            _rss_mib(pid) - idle_rss,
            _threads(pid) - idle_threads,
            _connections(name),
        )
        data = image_bytes(size=(8, 8))
        for generation_id in ids:
            _finish(generation_id, data)
        clients.join(60)
    finally:
        web.stop()

    print(f"{STREAMS} open streams: {rss_above_idle:.1f} MiB above idle, {more_threads} threads, {connections} conns")
    assert rss_above_idle < 100
    assert more_threads <= 5
    assert connections <= POOL_SIZE  # the pool's, not one per stream
    assert results["names"] == [["generation.queued", "generation.started", "generation.succeeded"]] * STREAMS
    assert until(lambda: Generation.objects.filter(status="succeeded").count() == GENERATIONS, timeout=5)
