"""`celery -A hub worker` as Celery's docs teach it — no --pool, --concurrency or --queues — is
safe: its concurrency follows the pool it starts (prefork: the CPUs, not a process per 1,000), and
it takes the paid generations, not only the default queue."""

import os
import re
import uuid

import pytest
from django.test import override_settings

from tests.conftest import WorkerProcess
from tests.faults.conftest import wait_for_status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
UNSET = {"CELERY_WORKER_CONCURRENCY": ""}  # empty is unset: the test run's environment must not decide


def _banner_concurrency(worker: WorkerProcess) -> str:
    return re.search(r"\.> concurrency: (.+)", worker.output())[1].strip()


@pytest.mark.slow
def test_the_plain_command_forks_a_process_per_cpu_and_runs_the_generations(api, customer):
    generations, housekeeping = f"plain-gen-{uuid.uuid4().hex[:8]}", f"plain-house-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(
        name="plain",
        pool=None,
        concurrency=None,
        queues=None,
        env_overrides={**UNSET, "HUB_GENERATIONS_QUEUE": generations, "HUB_HOUSEKEEPING_QUEUE": housekeeping},
    )
    try:
        worker.start(timeout=60)
        children = worker.pool_children()
        assert _banner_concurrency(worker) == f"{len(children)} (prefork)"
        assert 1 <= len(children) <= os.cpu_count()
        assert re.search(rf"\.> {generations} ", worker.output()) and re.search(
            rf"\.> {housekeeping} ", worker.output()
        )

        body = {"model": "gpt-image-2", "prompt": "plain", "size": "1024x1024", "quality": "low", "async": True}
        with override_settings(GENERATIONS_QUEUE=generations):
            response = api.post("/api/v1/images/generations", data=body, format="json", **customer[2])
        assert response.status_code == 202
        generation = wait_for_status(response.json()["id"], ["succeeded", "failed"])
        assert generation.status == "succeeded" and generation.images.count() == 1
    finally:
        worker.stop()


@pytest.mark.parametrize(
    ("pool", "env", "shown"),
    [("gevent", UNSET, "1000 (gevent)"), ("threads", UNSET, f"{len(os.sched_getaffinity(0))} (thread)")]
    + [("prefork", {"CELERY_WORKER_CONCURRENCY": "3"}, "3 (prefork)")],
)
@pytest.mark.slow
def test_the_default_concurrency_follows_the_pool_and_the_setting_overrides_it(pool, env, shown):
    queue = f"idle-{uuid.uuid4().hex[:8]}"
    worker = WorkerProcess(name=f"plain-{pool}", pool=pool, concurrency=None, queues=queue, env_overrides=env)
    try:
        worker.start(timeout=60)
        assert _banner_concurrency(worker) == shown
    finally:
        worker.stop()
