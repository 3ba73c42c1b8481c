"""Keeps a running attempt's lease alive while its provider call is in flight."""

import logging
import threading
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

from generations.services import generation_lease_renew

logger = logging.getLogger(__name__)


@contextmanager
def lease_heartbeat(*, generation_id: str, attempt: int):
    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(settings.GENERATION_LEASE_SECONDS / 3):
                if not generation_lease_renew(generation_id=generation_id, attempt=attempt):
                    logger.warning("generation %s: attempt %s lost its lease", generation_id, attempt)
                    return
        except Exception:
            logger.exception("generation %s: lease heartbeat failed", generation_id)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"lease-{generation_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
