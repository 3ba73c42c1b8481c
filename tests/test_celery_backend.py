"""Results are not stored (the generation row is the outcome), and the disabled result backend
is made once per process: under the gevent pool each task runs in a new greenlet, which Celery
treats as a new thread for a backend that is not thread-safe (CELERY_RESULT_BACKEND_THREAD_SAFE)."""

import threading

import pytest

from hub.celery import app


def test_every_thread_shares_one_disabled_backend():
    first = app.backend
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(app.backend)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [backend is first for backend in seen] == [True, True, True]
    assert first.as_uri() == "disabled://"


def test_a_result_cannot_be_read():
    with pytest.raises(NotImplementedError):
        app.AsyncResult("some-task-id").get(timeout=1)
