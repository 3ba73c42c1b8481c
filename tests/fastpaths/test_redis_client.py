"""REDIS_CLIENT (hub/infra/fastpaths/redis_client.py): the broker channel keeps one Redis client, or
kombu makes one per command; a message goes through Redis the same either way."""

import uuid

import pytest

from tests.fastpaths.conftest import fast_path
from tests.test_broker_transport import broker_connection, redis_broker_only

pytestmark = redis_broker_only


def _round_trip(on: bool) -> tuple[bool, dict, dict]:
    """(whether two commands shared a client, the payload and headers a consumer received)."""
    with (
        fast_path("REDIS_CLIENT", on),
        broker_connection() as connection,
    ):
        channel = connection.default_channel
        shared = channel._create_client() is channel._create_client()
        queue = connection.SimpleQueue(f"hub-fastpath-redis-{uuid.uuid4().hex}")
        try:
            queue.put({"generation_id": "gen_1"}, headers={"request_id": "req_1"})
            message = queue.get(timeout=5)
            message.ack()
            with pytest.raises(queue.Empty):
                queue.get(timeout=0.3)
            return shared, message.payload, message.headers
        finally:
            queue.close()


def test_messages_flow_alike_with_one_client_or_one_per_command():
    fast, library = _round_trip(True), _round_trip(False)
    assert (fast[0], library[0]) == (True, False)
    assert fast[1:] == library[1:] == ({"generation_id": "gen_1"}, {"request_id": "req_1"})
