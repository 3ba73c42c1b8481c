"""Waiting costs nothing: 200 sync requests waiting at once on the production web server
(deploy/bin/web) add no thread and no database connection per wait, and each is answered
when its generation finishes."""

import os
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection

from billing.models import CreditAccount
from generations.models import Generation, GenerationStatus
from generations.services import StoredImage, generation_claim, generation_finalize
from hub.infra import storage
from tests.conftest import PATIENT_WEB, WebProcess, database_url_for_subprocess, until
from tests.factories import make_key, make_user
from tests.images import image_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
WAITS = 200
POOL_SIZE = 4


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _connections(application_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application_name])
        return cursor.fetchone()[0]


def _finish(generation_id: str, data: bytes) -> None:
    """What a worker would do: claim, store one image, finalize (which publishes the finish)."""
    attempt = generation_claim(generation_id=generation_id).attempts
    key = storage.image_key(generation_id=generation_id, index=0)
    storage.object_save(key=key, data=data, content_type="image/png")
    image = StoredImage(index=0, storage_key=key, content_type="image/png", width=8, height=8, byte_size=len(data))
    generation_finalize(generation_id=generation_id, attempt=attempt, images=[image])


@pytest.mark.slow
@pytest.mark.capacity
@pytest.mark.timeout(600)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="counts PostgreSQL connections")
def test_two_hundred_sync_waits_hold_no_thread_and_no_connection_each(unconsumed_queue):
    user = make_user(credits=2 * WAITS)
    raw = make_key(user)
    name = f"hub-web-waits-{os.getpid()}"
    web = WebProcess(
        env_overrides={
            "DATABASE_URL": f"{database_url_for_subprocess()}?application_name={name}",
            "HUB_GENERATIONS_QUEUE": unconsumed_queue,
            "DATABASE_POOL_MAX_SIZE": str(POOL_SIZE),
            **PATIENT_WEB,  # one of the 200 was dropped so under make test's load: 199 were queued
        }
    ).start()
    try:
        [pid] = web.worker_pids()
        body = {"model": "gpt-image-2", "prompt": "wait", "size": "1024x1024", "quality": "low"}
        # Generous deadlines: the 200 charges take one account's lock in turn, and at the start of
        # `make test` the machine is shared with the other capacity tests. What this test measures
        # is what the waits hold, not how soon they came.
        limits = httpx.Limits(max_connections=WAITS)
        with httpx.Client(base_url=web.base_url, timeout=300, limits=limits) as client:
            client.get("/api/v1/models")  # warm the process (imports, pool) before the baseline
            threads_before = _threads(pid)

            def post(_):
                return client.post("/api/v1/images/generations", json=body, headers={"Authorization": f"Bearer {raw}"})

            with ThreadPoolExecutor(WAITS) as pool:
                answers = pool.map(post, range(WAITS))
                assert until(
                    lambda: Generation.objects.filter(status=GenerationStatus.QUEUED).count() == WAITS, timeout=180
                )
                waiting_threads, waiting_connections = _threads(pid), _connections(name)
                data = image_bytes(size=(8, 8))
                for generation_id in Generation.objects.values_list("pk", flat=True):
                    _finish(generation_id, data)
                statuses = [answer.status_code for answer in answers]
    finally:
        web.stop()

    assert statuses == [200] * WAITS
    assert waiting_threads - threads_before <= 5, (threads_before, waiting_threads)
    assert waiting_connections <= POOL_SIZE, waiting_connections  # the web process's pool, not one per wait
    assert CreditAccount.objects.get(user=user).balance == 0
