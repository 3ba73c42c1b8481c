"""The Redis broker transport: kombu's, with one Redis client per channel instead of one per
command (hub.fastpaths.redis_client), a pool that waits for a free connection, and a poller that
resumes as soon as a slot frees.

A full worker takes its next message as soon as a slot frees: with acks late and a prefetch
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

from kombu.transport import redis
from redis import BlockingConnectionPool
from redis import exceptions as redis_errors

from hub.fastpaths.redis_client import REDIS_CLIENT, shared_client
from hub.fastpaths.task_message import TASK_MESSAGE, task_message

CREDIT_RECHECK_SECONDS = 0.02
# How long a delivery's bookkeeping or ack waits for one of the channel's connections.
POOL_WAIT_SECONDS = 20


class Channel(redis.Channel):
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
        # The event loop's own client (BRPOP) is already made once per channel.
        if asynchronous or not REDIS_CLIENT.on():
            return super()._create_client(asynchronous=asynchronous)
        return shared_client(self, super()._create_client)


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
    task that takes its own id as its one argument (a generation's run). On the Redis broker the
    hub's own Redis is, the message Celery builds for it is pushed by one LPUSH
    (hub.fastpaths.task_message); any other broker, the fast path off, and a Redis error there
    take Celery's own send_task (with `retry_policy`)."""
    from django.conf import settings

    from hub.celery import app
    from hub.completion import redis_client

    if (
        settings.CELERY_BROKER_URL == settings.REDIS_URL
        and settings.CELERY_BROKER_URL.startswith("redis://")
        and TASK_MESSAGE.on()
    ):
        try:
            redis_client().lpush(queue, task_message(name, task_id=task_id, queue=queue, headers=headers))
            return
        except (redis_errors.RedisError, OSError):
            pass  # Celery's send_task retries, then raises what the caller handles
    app.send_task(name, args=[task_id], task_id=task_id, queue=queue, headers=headers, retry_policy=retry_policy)
