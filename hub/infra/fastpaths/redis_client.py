"""One redis-py client per kombu Redis channel instead of one per command.

Replaces: kombu's Redis channel building a new `redis.Redis` client (`Channel._create_client`)
for each publish, and with ack emulation (off here: hub.settings) for each delivery's
bookkeeping and ack (`conn_or_acquire`), all on the same connection pool. Building one fills its
response-callback table, a few hundred entries: in the sync-c32-0s profile, over half of what a
`send_task` cost the web and ~2 % of a generation worker's CPU. A redis-py client is safe to
share (each command borrows a connection from the pool and gives it back; pipelines are still
made per use), so each channel keeps one, made again if its pool is replaced (kombu drops its
pools after a fork). Used by hub.broker.Channel.
"""

from collections.abc import Callable

from hub.infra.fastpaths import FastPath

REDIS_CLIENT = FastPath("REDIS_CLIENT", "kombu", "5.7.0")


def shared_client(channel, create: Callable):
    """The channel's one client, made by `create` (kombu's own) the first time and again when the
    channel's pool is not the one it was made on."""
    client = getattr(channel, "_hub_shared_client", None)
    if client is None or client.connection_pool is not channel.pool:
        client = channel._hub_shared_client = create()
    return client
