"""The Redis broker transport: kombu's, with one Redis client per channel instead of one per
command.

kombu's Redis channel builds a new `redis.Redis` client for each publish, and with ack
emulation (off here: hub.settings) for each delivery's bookkeeping and ack (`conn_or_acquire`),
all on the same connection pool. Building
one fills its response-callback table, a few hundred entries: in the sync-c32-0s profile, over
half of what a `send_task` cost the web and ~2 % of a generation worker's CPU. A redis-py client
is safe to share (each command borrows a connection from the pool and gives it back; pipelines
are still made per use), so each channel keeps one, made again if its pool is replaced (kombu
drops its pools after a fork).

And a full worker takes its next message as soon as a slot frees. With acks late and a prefetch
of exactly the pool's size, a worker whose pool is full stops BRPOP; kombu's poller then checks
for credit again only after its poll times out — up to a second, sleeping or waiting on the
remote-control socket — though the ack that frees a slot comes a few milliseconds later. At
exactly as many calls in flight as slots (bench sync-c1000-30s with the clients' starts spread
over 30 s, 1,000 clients for the default 1,000 slots) every hand-off paid that wait: +1.0 s
added latency p50 over the second round (+19 ms with 1,500 slots). A plain consumer with no other
socket fared worse: kombu's own poller had not delivered the next message 60 s after the ack
(tests/test_broker_transport.py; why it never resumes there is not understood). While credit is
exhausted this poller waits at most CREDIT_RECHECK_SECONDS before it checks again.

Used for `redis://` brokers (CELERY_BROKER_TRANSPORT in hub.settings); other schemes keep
kombu's own transport.
"""

import base64
import json
import os
import uuid

from kombu.transport import redis
from redis import BlockingConnectionPool
from redis import exceptions as redis_errors

CREDIT_RECHECK_SECONDS = 0.02
# How long a delivery's bookkeeping or ack waits for one of the channel's connections.
POOL_WAIT_SECONDS = 20


class Channel(redis.Channel):
    _shared_client = None

    def _get_pool(self, asynchronous=False):
        """kombu's pool for the channel's commands, but one that makes a caller wait for a free
        connection instead of raising. kombu's caps it at `max_connections` (10) and redis-py's
        plain pool raises MaxConnectionsError past that: a gevent worker runs up to 1,000 tasks
        at once, and at c1000 their acks failed "Too many connections" (bench sync-c1000-*: once
        in 2 of 13 runs, 17 times in one with DATABASE_POOL_MAX_SIZE=20) while acks still went
        to Redis (ack emulation, now off: hub.settings). Its retries' publishes and a shutdown's
        restores still do. The event loop's own BRPOP pool is kombu's."""
        pool = super()._get_pool(asynchronous=asynchronous)
        if asynchronous:
            return pool
        return BlockingConnectionPool(
            connection_class=pool.connection_class,
            max_connections=pool.max_connections,
            timeout=POOL_WAIT_SECONDS,
            **pool.connection_kwargs,
        )

    def _create_client(self, asynchronous=False):
        if asynchronous:  # the event loop's own client (BRPOP), already made once per channel
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()
        return client


class MultiChannelPoller(redis.MultiChannelPoller):
    def get(self, callback, timeout=None):
        if any(channel.active_queues and not channel.qos.can_consume() for channel in self._channels):
            timeout = CREDIT_RECHECK_SECONDS if timeout is None else min(timeout, CREDIT_RECHECK_SECONDS)
        return super().get(callback, timeout=timeout)


class Transport(redis.Transport):
    Channel = Channel

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cycle = MultiChannelPoller()  # kombu's own, made by the parent: no channel is on it yet


def task_send(*, name: str, task_id: str, queue: str, headers: dict, retry_policy: dict) -> None:
    """`app.send_task(name, args=[task_id], task_id=task_id, queue=queue, headers=headers)` for a
    task that takes its own id as its one argument (a generation's run), on the Redis broker the
    hub's own Redis is: the message Celery builds for it, pushed by one LPUSH.

    Why: building a task message and publishing it through kombu's producer is ~10 % of an async
    submit's CPU in the web (bench async-c32, yappi: routing, the protocol's header set, kombu's
    serializer and body encoding, its channel and connection checks), though only three values
    change from one such message to the next. The rest of the message is taken once per process
    from Celery's own `create_task_message` (so it follows the installed Celery), and
    tests/test_broker_transport.py holds the two messages equal. Any other broker, and a Redis
    error here, take Celery's own send_task (with `retry_policy`)."""
    from django.conf import settings

    from hub.celery import app
    from hub.infra.redis_client import redis_client

    if settings.CELERY_BROKER_URL == settings.REDIS_URL and settings.CELERY_BROKER_URL.startswith("redis://"):
        try:
            redis_client().lpush(queue, _task_message(name, task_id=task_id, queue=queue, headers=headers))
            return
        except (redis_errors.RedisError, OSError):
            pass  # Celery's send_task retries, then raises what the caller handles
    app.send_task(name, args=[task_id], task_id=task_id, queue=queue, headers=headers, retry_policy=retry_policy)


# By (task name, process): the headers every message of the task shares, and its reply_to.
_SHARED: dict[tuple[str, int], tuple[dict, str]] = {}
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _task_message(name: str, *, task_id: str, queue: str, headers: dict) -> str:
    shared, reply_to = _SHARED.get((name, os.getpid())) or _shared(name)
    body = json.dumps([[task_id], {}, _EMBED]).encode()
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {**shared, "id": task_id, "root_id": task_id, "argsrepr": repr([task_id]), **headers},
            "properties": {
                "correlation_id": task_id,
                "reply_to": reply_to,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def _shared(name: str) -> tuple[dict, str]:
    """What Celery's own message for `name` holds beside the task's id (its origin names the
    process, hence one per process)."""
    from hub.celery import app

    marker = "hub-task-marker"
    # As send_task calls it for a task sent without options (ignore_result: None, not False).
    made = app.amqp.create_task_message(marker, name, [marker], {}, reply_to=app.thread_oid, ignore_result=None)
    shared = {key: value for key, value in made.headers.items() if key not in ("id", "root_id", "argsrepr")}
    _SHARED[(name, os.getpid())] = shared, made.properties["reply_to"]
    return _SHARED[(name, os.getpid())]
