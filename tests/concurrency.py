"""Releasing threads at once, each on its own database connection (races against the database)."""

import threading

from django.db import connection


def run_together(targets: list, timeout: float = 60) -> None:
    """Start one thread per callable, release them at once, re-raise the first failure."""
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def body(target):
        try:
            barrier.wait(timeout)
            target()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(t,), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    if errors:
        raise errors[0]
