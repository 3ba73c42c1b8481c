"""Fault scenarios run their own worker processes on a private queue, so killing them never
touches the session worker, and tune the lease so a lost worker is noticed in seconds."""

import os
import signal
import time
import uuid

import pytest

from generations.models import FINISHED, Generation
from generations.sweeper import generations_sweep
from tests.conftest import WorkerProcess

LEASE_SECONDS = 2


@pytest.fixture
def fault_queue(settings):
    """Set through pytest-django's `settings`, not an override_settings block of its own: a test
    that also changes `settings` (set up before this fixture) would otherwise restore, at its
    teardown, the settings as they were inside the block — this private queue, for the rest of
    the session, where no session worker reads (the session worker then started on it)."""
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    settings.GENERATIONS_QUEUE = queue
    settings.GENERATION_LEASE_SECONDS = LEASE_SECONDS
    return queue


@pytest.fixture
def start_worker(fault_queue):
    """start_worker(pool=…, concurrency=…, **env) → a running WorkerProcess on the private queue."""
    started = []

    def start(*, pool: str = "gevent", concurrency: int = 4, **env) -> WorkerProcess:
        worker = WorkerProcess(
            name="fault",
            pool=pool,
            concurrency=concurrency,
            queues=fault_queue,
            env_overrides={"HUB_GENERATIONS_QUEUE": fault_queue, "GENERATION_LEASE_SECONDS": str(LEASE_SECONDS), **env},
        ).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            os.killpg(worker.proc.pid, signal.SIGKILL)
            worker.proc.wait()
        worker.log.close()


def wait_for_status(generation_id: str, statuses, timeout: float = 30.0) -> Generation:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        generation = Generation.objects.get(pk=generation_id)
        if generation.status in statuses:
            return generation
        time.sleep(0.05)
    raise AssertionError(f"{generation_id} still {generation.status} after {timeout} s")


def sweep_until(generation_id: str, statuses=FINISHED, timeout: float = 40.0) -> Generation:
    """Run the sweeper (as beat would, here every 0.25 s) until the generation reaches `statuses`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        generations_sweep()
        generation = Generation.objects.get(pk=generation_id)
        if generation.status in statuses:
            return generation
        time.sleep(0.25)
    raise AssertionError(
        f"{generation_id} still {generation.status} (attempts {generation.attempts}), wanted {statuses}"
    )
