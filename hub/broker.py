"""The Redis broker transport: kombu's, with one Redis client per channel instead of one per
command.

kombu's Redis channel builds a new `redis.Redis` client for each publish, and for each
delivery's bookkeeping and ack (`conn_or_acquire`), all on the same connection pool. Building
one fills its response-callback table, a few hundred entries: in the sync-c32-0s profile, over
half of what a `send_task` cost the web and ~2 % of a generation worker's CPU. A redis-py client
is safe to share (each command borrows a connection from the pool and gives it back; pipelines
are still made per use), so each channel keeps one, made again if its pool is replaced (kombu
drops its pools after a fork).

Used for `redis://` brokers (CELERY_BROKER_TRANSPORT in hub.settings); other schemes keep
kombu's own transport.
"""

from kombu.transport import redis


class Channel(redis.Channel):
    _shared_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:  # the event loop's own client (BRPOP), already made once per channel
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()
        return client


class Transport(redis.Transport):
    Channel = Channel
