"""The process's one Redis client (REDIS_URL): the sync waits' notifications, the API keys'
limits, the upstreams' budgets and circuits, and the broker's sends on the hub's own Redis use
it. Its connection pool is thread- and greenlet-safe."""

import functools

import redis
from django.conf import settings

from hub.celery import calls_in_flight
from hub.infra.singletons import per_process

# Connections of the process's Redis client beyond one per task in flight: the completion
# listener, the lease and schedule loops, a web request's rate limit.
SPARE_CONNECTIONS = 16


@per_process
def redis_client() -> redis.Redis:
    """Its pool holds one connection per task in flight: redis-py 8 caps a pool at 100 by default
    and refuses the 101st call, and a gevent worker's thousand calls each ask for an upstream slot
    (bench noisy-neighbour --a-requests 1000: 2,385 budget checks refused, their calls sent
    unbudgeted, 66 % 429s)."""
    return redis.Redis.from_url(
        settings.REDIS_URL, health_check_interval=30, max_connections=calls_in_flight() + SPARE_CONNECTIONS
    )


def redis_script(source: str) -> redis.commands.core.Script:
    """The process's client's script object for a Lua `source` (EVALSHA; loaded again on a
    NOSCRIPT), made once per client: redis-py's register_script encodes and hashes the source
    each time it is called, and the worker's turn, its call's end and the web's fair stamp each
    run one per generation."""
    return _script_of(redis_client(), source)


@functools.lru_cache(maxsize=64)
def _script_of(client: redis.Redis, source: str) -> redis.commands.core.Script:
    return client.register_script(source)
