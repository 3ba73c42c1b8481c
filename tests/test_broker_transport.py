"""The Redis broker transport (hub/broker.py): messages go through Redis as with kombu's own
transport; a consumer whose credit is exhausted takes its next message right after the ack."""

import socket
import threading
import time
import uuid

import pytest
from django.conf import settings
from kombu import Connection, Consumer, Exchange, Queue

pytestmark = pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis://"), reason="the Redis transport (suite on its services)"
)


def _connection() -> Connection:
    """A connection as the workers make it: the hub's transport with its options (hub.settings)."""
    return Connection(
        settings.CELERY_BROKER_URL,
        transport=settings.CELERY_BROKER_TRANSPORT,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    )


def test_messages_flow_through_the_hubs_transport():
    assert settings.CELERY_BROKER_TRANSPORT == "hub.broker:Transport"
    with _connection() as connection:
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


def test_a_delivery_keeps_no_copy_in_redis_and_a_closed_channel_puts_back_what_it_did_not_ack():
    """Ack emulation is off (hub.settings): taking a message and acking it write nothing to Redis
    (kombu's default keeps a copy in its `unacked` hash, two MULTI/EXECs per task), and what a
    consumer took but did not ack is back on its queue once its channel closes — a warm shutdown
    returns the messages it had not started, from the worker's memory."""
    from hub.completion import redis_client

    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS == {"ack_emulation": False}
    name = f"hub-broker-test-{uuid.uuid4().hex}"
    client = redis_client()
    try:
        with _connection() as connection:
            queue = connection.SimpleQueue(name)
            queue.put({"n": 1})
            queue.put({"n": 2})
            first, second = queue.get(timeout=5), queue.get(timeout=5)
            channel = connection.default_channel
            for message in (first, second):
                assert not client.hexists(channel.unacked_key, message.delivery_tag)
                assert client.zscore(channel.unacked_index_key, message.delivery_tag) is None
            first.ack()
            assert client.llen(name) == 0
        # Closed with the second unacked (a warm shutdown's end): it is queued again, and only it.
        with _connection() as connection:
            queue = connection.SimpleQueue(name)
            again = queue.get(timeout=5)
            assert again.payload == second.payload
            again.ack()
            with pytest.raises(queue.Empty):
                queue.get(timeout=0.5)
    finally:
        client.delete(name)


def test_a_full_consumer_takes_the_next_message_soon_after_an_ack():
    """Credit exhausted (prefetch 1, one message unacked): the ack from another thread — a task
    finishing while the consumer polls — lets the next message in at once (hub/broker.py). With
    kombu's own poller the same steps had not delivered it 60 s after the ack."""
    name = f"hub-broker-test-{uuid.uuid4().hex}"
    queue = Queue(name, Exchange(name, "direct"), routing_key=name)
    received = []
    with _connection() as connection:
        try:
            with Consumer(connection, [queue], callbacks=[lambda body, message: received.append(message)]) as consumer:
                consumer.qos(prefetch_count=1)
                producer = connection.Producer()
                for n in (1, 2):
                    producer.publish({"n": n}, exchange=queue.exchange, routing_key=name, declare=[queue])
                connection.drain_events(timeout=5)
                assert [m.payload for m in received] == [{"n": 1}]
                with pytest.raises(socket.timeout):  # no credit: the second waits
                    connection.drain_events(timeout=0.3)
                threading.Timer(0.2, received[0].ack).start()
                started = time.monotonic()
                connection.drain_events(timeout=5)
                waited = time.monotonic() - started
                assert [m.payload for m in received] == [{"n": 1}, {"n": 2}]
                assert waited < 0.7, waited
                received[1].ack()
        finally:
            queue(connection.default_channel).delete()


def test_more_commands_at_once_than_the_channels_connections_wait_for_one():
    """A gevent worker acks up to 1,000 tasks at once through its channel's pool of 10 (kombu's
    max_connections): past that, a command waits for a free connection instead of failing with
    MaxConnectionsError (seen at c1000 as "Couldn't ack", the message then unacked for good)."""
    with _connection() as connection:
        channel = connection.default_channel
        client, cap = channel._create_client(), channel.pool.max_connections
        key = f"hub-broker-test-{uuid.uuid4().hex}"  # never pushed: each BLPOP holds a connection 0.3 s
        results, errors = [], []

        def hold():
            try:
                results.append(client.blpop([key], timeout=0.3))
            except Exception as exc:  # noqa: BLE001 — the test reports what failed
                errors.append(exc)

        threads = [threading.Thread(target=hold) for _ in range(cap * 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert results == [None] * (cap * 3)
