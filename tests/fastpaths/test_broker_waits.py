"""BROKER_WAITS (hub/infra/fastpaths/broker_waits.py): with the fix on, more commands at once than the
channel's connections wait for one; off, kombu's own pool refuses them as it always did. Messages
go through Redis the same either way."""

import threading
import uuid

from tests.fastpaths.conftest import fast_path
from tests.test_broker_transport import broker_connection, redis_broker_only

pytestmark = redis_broker_only


def _busy_channel(on: bool) -> tuple[list, list, dict]:
    """Three times the channel's connections of commands at once, and a message's round trip."""
    with (
        fast_path("BROKER_WAITS", on),
        broker_connection() as connection,
    ):
        channel = connection.default_channel
        client, cap = channel._create_client(), channel.pool.max_connections
        key = f"hub-fastpath-waits-{uuid.uuid4().hex}"  # never pushed: each BLPOP holds a connection 0.3 s
        results, errors = [], []

        def hold():
            try:
                results.append(client.blpop([key], timeout=0.3))
            except Exception as exc:  # noqa: BLE001 — the test reports what failed
                errors.append(type(exc).__name__)

        threads = [threading.Thread(target=hold) for _ in range(cap * 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        queue = connection.SimpleQueue(f"hub-fastpath-waits-{uuid.uuid4().hex}")
        try:
            queue.put({"n": 1})
            message = queue.get(timeout=5)
            message.ack()
        finally:
            queue.close()
        return results, errors, message.payload


def test_a_busy_channel_waits_for_a_connection_or_refuses_as_kombu_does():
    results, errors, payload = _busy_channel(True)
    assert errors == [] and results == [None] * len(results) and payload == {"n": 1}
    results, errors, payload = _busy_channel(False)
    assert errors and set(errors) == {"MaxConnectionsError"} and payload == {"n": 1}
