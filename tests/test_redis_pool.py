"""The process's Redis client serves as many calls at once as the process runs tasks: a gevent
worker's calls each ask Redis for an upstream slot, and redis-py's default pool refused the
101st (the budget then went unenforced)."""

import threading

import pytest
from django.conf import settings

from hub.celery import calls_in_flight
from hub.infra.redis_client import redis_client


def test_more_than_a_hundred_calls_at_once_each_get_a_connection():
    if not settings.REDIS_URL:
        pytest.skip("no Redis")
    client, errors, calls = redis_client(), [], 150
    assert calls <= calls_in_flight()
    ready = threading.Barrier(calls)

    def call(index: int) -> None:
        ready.wait()
        try:
            client.blpop([f"hub:test:pool:{index}"], timeout=1)  # holds its connection for a second
        except Exception as exc:  # noqa: BLE001 — what the test counts
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(index,)) for index in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
