"""The Redis broker transport: kombu's, with one Redis client per channel instead of one per
command (hub.infra.fastpaths.redis_client), a pool that makes a command wait for a free
connection and a poller that resumes as soon as a slot frees (hub.infra.fastpaths.broker_waits).
In its test a plain consumer with kombu's own poller had not delivered the next message 60 s
after the ack (tests/test_broker_transport.py; why it never resumes there is not understood).

Used for `redis://` brokers (CELERY_BROKER_TRANSPORT in hub.settings); other schemes keep
kombu's own transport.
"""

from kombu.transport import redis
from redis import exceptions as redis_errors

from hub.infra.fastpaths.broker_waits import BROKER_WAITS, poll_timeout, waiting_pool
from hub.infra.fastpaths.redis_client import REDIS_CLIENT, shared_client
from hub.infra.fastpaths.task_message import TASK_MESSAGE, task_message


class Channel(redis.Channel):
    def _get_pool(self, asynchronous=False):
        """kombu's pool for the channel's commands; one that waits for a free connection
        (hub.infra.fastpaths.broker_waits). The event loop's own BRPOP pool is kombu's."""
        pool = super()._get_pool(asynchronous=asynchronous)
        return pool if asynchronous or not BROKER_WAITS.on() else waiting_pool(pool)

    def _create_client(self, asynchronous=False):
        # The event loop's own client (BRPOP) is already made once per channel.
        if asynchronous or not REDIS_CLIENT.on():
            return super()._create_client(asynchronous=asynchronous)
        return shared_client(self, super()._create_client)


class MultiChannelPoller(redis.MultiChannelPoller):
    def get(self, callback, timeout=None):
        if BROKER_WAITS.on():  # a full worker rechecks its credit soon (hub.infra.fastpaths.broker_waits)
            timeout = poll_timeout(self._channels, timeout)
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
    (hub.infra.fastpaths.task_message); any other broker, the fast path off, and a Redis error there
    take Celery's own send_task (with `retry_policy`)."""
    from hub.celery import app
    from hub.infra.redis_client import redis_client

    message = task_message_for_lpush(name=name, task_id=task_id, queue=queue, headers=headers)
    if message is not None:
        try:
            redis_client().lpush(queue, message)
            return
        except (redis_errors.RedisError, OSError):
            pass  # Celery's send_task retries, then raises what the caller handles
    app.send_task(name, args=[task_id], task_id=task_id, queue=queue, headers=headers, retry_policy=retry_policy)


def task_message_for_lpush(*, name: str, task_id: str, queue: str, headers: dict) -> str | None:
    """The message task_send would LPUSH to `queue` on the hub's own Redis (hub.infra.redis_client),
    for a caller that pushes it in a round trip it makes anyway (generations.fair's stamp); None
    where task_send would not (another broker, the fast path off)."""
    from django.conf import settings

    if (
        settings.CELERY_BROKER_URL == settings.REDIS_URL
        and settings.CELERY_BROKER_URL.startswith("redis://")
        and TASK_MESSAGE.on()
    ):
        return task_message(name, task_id=task_id, queue=queue, headers=headers)
    return None
