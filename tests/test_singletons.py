"""hub.infra.singletons.per_process: one object per process (and arguments), made once however
many threads ask first, and made anew in a forked child — as gunicorn's and Celery's prefork
children are."""

import os
import signal
import threading
import time

from hub.infra.singletons import per_process


def _counting():
    made = []

    @per_process
    def thing(*args):
        made.append(args)
        return object()

    return thing, made


def test_one_object_per_process_and_arguments():
    thing, made = _counting()
    assert thing() is thing()
    assert thing("a") is thing("a") is not thing()
    assert made == [(), ("a",)]
    thing.reset()
    thing()
    assert made == [(), ("a",), ()]


def test_threads_asking_at_once_get_one_object():
    made = []

    @per_process
    def slow():
        made.append(1)
        time.sleep(0.05)  # a client that connects: every thread arrives before it is made
        return object()

    got = []
    threads = [threading.Thread(target=lambda: got.append(slow())) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and len({id(obj) for obj in got}) == 1


def _in_child(check) -> bytes:
    """`check()`'s one-byte answer, run in a forked child (killed after 5 s: a deadlock fails)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            signal.alarm(5)
            os.write(write, check())
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    return answer


def test_a_forked_child_makes_its_own():
    thing, _ = _counting()
    parent = thing()
    assert _in_child(lambda: b"1" if thing() is not parent and thing() is thing() else b"0") == b"1"
    assert thing() is parent  # the parent keeps its own


def test_a_child_forked_while_another_thread_makes_one_is_not_stuck():
    entered, release = threading.Event(), threading.Event()

    @per_process
    def blocking(name):
        if name == "held":  # holds the helper's lock until released
            entered.set()
            release.wait()
        return object()

    holder = threading.Thread(target=blocking, args=("held",))
    holder.start()
    entered.wait()
    try:
        assert _in_child(lambda: b"1" if blocking("other") is not None else b"0") == b"1"
    finally:
        release.set()
        holder.join()
