"""The sync wait is woken by a notification, not by polling the database."""

import threading
import time

import pytest
from django.conf import settings

from hub import completion

needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="pub/sub needs Redis; embedded default polls")


@needs_redis
def test_waiter_is_woken_by_the_published_completion():
    checks = []
    done = threading.Event()

    def is_finished():
        checks.append(time.monotonic())
        return done.is_set()

    def finish_later():
        time.sleep(0.5)
        done.set()
        completion.publish_done("gen_wakeup")

    threading.Thread(target=finish_later).start()
    started = time.monotonic()
    assert completion.wait_done("gen_wakeup", timeout=30, is_finished=is_finished)
    elapsed = time.monotonic() - started
    assert elapsed < 2  # woken by the message, long before the 5 s safety re-check
    assert len(checks) == 2  # one read before waiting, one after the message: no poll loop


def test_wait_times_out_when_nothing_finishes():
    started = time.monotonic()
    assert not completion.wait_done("gen_never", timeout=0.6, is_finished=lambda: False)
    assert 0.5 < time.monotonic() - started < 3
