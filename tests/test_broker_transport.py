"""The Redis broker transport keeps one Redis client per channel (hub/broker.py): the same
client for every publish and ack, a new one when kombu replaces the channel's pool (after a
fork) — and messages go through Redis as with kombu's own transport."""

import uuid

import pytest
from django.conf import settings
from kombu import Connection

pytestmark = pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis://"), reason="the Redis transport (suite on its services)"
)


def test_one_client_per_channel_pool_and_messages_still_flow():
    assert settings.CELERY_BROKER_TRANSPORT == "hub.broker:Transport"
    with Connection(settings.CELERY_BROKER_URL, transport=settings.CELERY_BROKER_TRANSPORT) as connection:
        channel = connection.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        assert channel._create_client(asynchronous=True) is not first  # the event loop's own
        channel._pool = None  # what kombu does after a fork
        assert channel._create_client() is not first
        queue = connection.SimpleQueue(f"hub-broker-test-{uuid.uuid4().hex}")
        try:
            queue.put({"generation_id": "gen_1"})
            message = queue.get(timeout=5)
            message.ack()
            assert message.payload == {"generation_id": "gen_1"}
            with pytest.raises(queue.Empty):  # acked: not delivered again
                queue.get(timeout=0.5)
        finally:
            queue.close()
