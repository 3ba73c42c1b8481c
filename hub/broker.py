"""The Redis broker transport: kombu's, with a pool that makes a command wait for a free
connection and a poller that resumes as soon as a slot frees (hub.fastpaths.broker_waits). In its
test a plain consumer with kombu's own poller had not delivered the next message 60 s after the
ack (tests/test_broker_transport.py; why it never resumes there is not understood).

Used for `redis://` brokers (CELERY_BROKER_TRANSPORT in hub.settings); other schemes keep
kombu's own transport.
"""

from kombu.transport import redis

from hub.fastpaths.broker_waits import BROKER_WAITS, poll_timeout, waiting_pool


class Channel(redis.Channel):
    def _get_pool(self, asynchronous=False):
        """kombu's pool for the channel's commands; one that waits for a free connection
        (hub.fastpaths.broker_waits). The event loop's own BRPOP pool is kombu's."""
        pool = super()._get_pool(asynchronous=asynchronous)
        return pool if asynchronous or not BROKER_WAITS.on() else waiting_pool(pool)


class MultiChannelPoller(redis.MultiChannelPoller):
    def get(self, callback, timeout=None):
        if BROKER_WAITS.on():  # a full worker rechecks its credit soon (hub.fastpaths.broker_waits)
            timeout = poll_timeout(self._channels, timeout)
        return super().get(callback, timeout=timeout)


class Transport(redis.Transport):
    Channel = Channel

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cycle = MultiChannelPoller()  # kombu's own, made by the parent: no channel is on it yet


def task_send(*, name: str, task_id: str, queue: str, headers: dict, retry_policy: dict) -> None:
    """Send a task that takes its own id as its one argument (a generation's run)."""
    from hub.celery import app

    app.send_task(name, args=[task_id], task_id=task_id, queue=queue, headers=headers, retry_policy=retry_policy)
