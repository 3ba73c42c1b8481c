"""The Redis broker transport: kombu's, with one Redis client per channel instead of one per
command.

kombu's Redis channel builds a new `redis.Redis` client for each publish, and for each
delivery's bookkeeping and ack (`conn_or_acquire`), all on the same connection pool. Building
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

from kombu.transport import redis

CREDIT_RECHECK_SECONDS = 0.02


class Channel(redis.Channel):
    _shared_client = None

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
