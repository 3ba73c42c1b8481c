"""Two fixes to kombu's Redis channel: a command waits for a free connection, and a full worker
rechecks its credit within milliseconds. Fixes, not savings: off, kombu's own behaviour is back.

Replaces: the pool kombu builds for a channel's commands (`Channel._get_pool`), capped at
`max_connections` (10), where redis-py's plain pool raises MaxConnectionsError past the cap: a
gevent worker runs up to 1,000 tasks at once, and at c1000 their acks failed "Too many
connections" (bench sync-c1000-*). With hub.broker's channel a caller waits up to
POOL_WAIT_SECONDS for a free connection instead. The event loop's own BRPOP pool stays kombu's.

And kombu's poller's timeout (`MultiChannelPoller.get`): with acks late and a prefetch of exactly
the pool's size, a worker whose pool is full stops BRPOP, and kombu checks for credit again only
after its poll times out — up to a second — though the ack that frees a slot comes a few
milliseconds later (bench sync-c1000-30s --ramp 30: +1.0 s added latency p50). While credit is
exhausted the hub's poller waits at most CREDIT_RECHECK_SECONDS before it checks again.
"""

from redis import BlockingConnectionPool

from hub.infra.fastpaths import FastPath

BROKER_WAITS = FastPath("BROKER_WAITS", "kombu", "5.7.0")

CREDIT_RECHECK_SECONDS = 0.02
# How long a delivery's bookkeeping or ack waits for one of the channel's connections.
POOL_WAIT_SECONDS = 20


def waiting_pool(pool):
    """kombu's pool `pool`, as one that makes a caller wait for a free connection."""
    return BlockingConnectionPool(
        connection_class=pool.connection_class,
        max_connections=pool.max_connections,
        timeout=POOL_WAIT_SECONDS,
        **pool.connection_kwargs,
    )


def poll_timeout(channels, timeout: float | None) -> float | None:
    """The poll's timeout: at most CREDIT_RECHECK_SECONDS while a consuming channel has no credit."""
    if any(channel.active_queues and not channel.qos.can_consume() for channel in channels):
        return CREDIT_RECHECK_SECONDS if timeout is None else min(timeout, CREDIT_RECHECK_SECONDS)
    return timeout
