"""The Redis broker transport keeps one Redis client per channel (hub/broker.py): the same
client for every publish and ack, a new one when kombu replaces the channel's pool (after a
fork) — and messages go through Redis as with kombu's own transport; a consumer whose credit is
exhausted takes its next message right after the ack."""

import base64
import json
import socket
import threading
import time
import uuid

import pytest
from django.conf import settings
from kombu import Connection, Consumer, Exchange, Queue

redis_broker_only = pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis://"), reason="the Redis transport (suite on its services)"
)
pytestmark = redis_broker_only


def broker_connection() -> Connection:
    """A connection as the workers make it: the hub's transport with its options (hub.settings)."""
    return Connection(
        settings.CELERY_BROKER_URL,
        transport=settings.CELERY_BROKER_TRANSPORT,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    )


def test_one_client_per_channel_pool_and_messages_still_flow():
    assert settings.CELERY_BROKER_TRANSPORT == "hub.broker:Transport"
    with broker_connection() as connection:
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


def test_a_delivery_keeps_no_copy_in_redis_and_a_closed_channel_puts_back_what_it_did_not_ack():
    """Ack emulation is off (hub.settings): taking a message and acking it write nothing to Redis
    (kombu's default keeps a copy in its `unacked` hash, two MULTI/EXECs per task), and what a
    consumer took but did not ack is back on its queue once its channel closes — a warm shutdown
    returns the messages it had not started, from the worker's memory."""
    from hub.infra.redis_client import redis_client

    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS == {"ack_emulation": False}
    name = f"hub-broker-test-{uuid.uuid4().hex}"
    client = redis_client()
    try:
        with broker_connection() as connection:
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
        with broker_connection() as connection:
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
    with broker_connection() as connection:
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


def test_a_generation_run_pushed_by_task_send_is_the_message_celery_sends():
    """task_send builds the message itself (one LPUSH); a worker must find in it what Celery's own
    send_task puts there — everything but the random delivery tag — and a consumer takes it."""
    from hub.broker import task_send
    from hub.celery import app
    from hub.infra.redis_client import redis_client

    ours, celerys = (f"hub-task-send-{side}-{uuid.uuid4().hex}" for side in ("ours", "celery"))
    task_id, headers = f"gen_{uuid.uuid4().hex[:24]}", {"request_id": "req_task_send"}
    task_send(name="generations.run", task_id=task_id, queue=ours, headers=headers, retry_policy={})
    app.send_task("generations.run", args=[task_id], task_id=task_id, queue=celerys, headers=headers)
    client = redis_client()
    try:
        sent = [json.loads(client.lpop(queue)) for queue in (ours, celerys)]
        for message, queue in zip(sent, (ours, celerys), strict=True):
            assert message["properties"].pop("delivery_info") == {"exchange": "", "routing_key": queue}
            assert uuid.UUID(message["properties"].pop("delivery_tag"))
        assert sent[0] == sent[1]
        assert json.loads(base64.b64decode(sent[0]["body"]))[0] == [task_id]

        task_send(name="generations.run", task_id=task_id, queue=ours, headers=headers, retry_policy={})
        with broker_connection() as connection:
            received = []
            queue = Queue(ours, Exchange(ours), routing_key=ours)
            with Consumer(connection, [queue], callbacks=[lambda body, message: received.append(message)]):
                connection.drain_events(timeout=5)
            received[0].ack()
        assert received[0].headers["id"] == task_id and received[0].headers["request_id"] == "req_task_send"
        assert received[0].payload[0] == [task_id]
    finally:
        client.delete(ours, celerys)


def test_more_commands_at_once_than_the_channels_connections_wait_for_one():
    """A gevent worker acks up to 1,000 tasks at once through its channel's pool of 10 (kombu's
    max_connections): past that, a command waits for a free connection instead of failing with
    MaxConnectionsError (seen at c1000 as "Couldn't ack", the message then unacked for good)."""
    with broker_connection() as connection:
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
