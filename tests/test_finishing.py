"""A worker finishes provider answers a few at a time, in the order they came (workers.finishing):
under the gevent pool (a child process, patched as Celery's gevent pool patches it) and with OS
threads (the threads pool, the embedded worker)."""

import os
import subprocess
import sys
import threading
import time

from hub.infra.singletons import per_process
from tests.conftest import ROOT
from workers import finishing

# Eight answers come back in order while 2 slots are free; each finish waits on I/O for 20 ms.
# Then both slots are held for 0.6 s and one more answer waits: at most 0.1 s, then it goes ahead.
CHILD = """
from gevent import monkey
monkey.patch_all()
import time
import django
django.setup()
import gevent
from gevent.lock import BoundedSemaphore
from hub.infra import metrics
from workers import finishing

inside, most, entered = [0], [0], []

def finish(i, io_seconds):
    with finishing.finishing_turn():
        entered.append(i)
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        gevent.sleep(io_seconds)
        inside[0] -= 1

gevent.joinall([gevent.spawn(finish, i, 0.02) for i in range(8)], raise_error=True)
print("gevent semaphore", isinstance(finishing._semaphore(), BoundedSemaphore))
print("at most", most[0])
print("in order", entered == list(range(8)))

finishing.MAX_WAIT_SECONDS = 0.1
holders = [gevent.spawn(finish, i, 0.6) for i in (8, 9)]
gevent.sleep(0.05)
started = time.monotonic()
late = gevent.spawn(finish, 10, 0)
late.join()
waited = time.monotonic() - started
print("went ahead", 0.08 <= waited < 0.4, all(not h.ready() for h in holders))
print("ungated", metrics.FINISHING_UNGATED._value.get())
print("waits", metrics.FINISHING_WAIT._sum.get() >= 0.08)
gevent.joinall(holders, raise_error=True)
"""


def test_under_gevent_answers_finish_in_order_a_few_at_a_time():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "hub.settings"}
    env["WORKER_FINISHING_SLOTS"] = "2"
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "gevent semaphore True",
        "at most 2",
        "in order True",
        "went ahead True True",
        "ungated 1.0",
        "waits True",
    ]


def test_with_threads_at_most_the_slots_finish_at_once_and_a_long_wait_goes_ahead(settings, monkeypatch):
    settings.WORKER_FINISHING_SLOTS = 3
    monkeypatch.setattr(finishing, "_semaphore", per_process(finishing._semaphore.__wrapped__))  # this test's count
    lock, inside, most = threading.Lock(), [0], [0]

    def finish(io_seconds: float) -> None:
        with finishing.finishing_turn():
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(io_seconds)
            with lock:
                inside[0] -= 1

    workers = [threading.Thread(target=finish, args=(0.05,)) for _ in range(12)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert most[0] == 3
    assert isinstance(finishing._semaphore(), threading.BoundedSemaphore)

    monkeypatch.setattr(finishing, "MAX_WAIT_SECONDS", 0.1)
    holders = [threading.Thread(target=finish, args=(0.8,)) for _ in range(3)]
    for holder in holders:
        holder.start()
    time.sleep(0.05)
    started = time.monotonic()
    finish(0)
    waited = time.monotonic() - started
    assert 0.08 <= waited < 0.5
    assert all(holder.is_alive() for holder in holders)  # it did not wait for a slot to free
    for holder in holders:
        holder.join()
    # Every slot is free again: three turns are taken without waiting.
    slots = finishing._semaphore()
    assert [slots.acquire(blocking=False) for _ in range(4)] == [True, True, True, False]
    for _ in range(3):
        slots.release()
