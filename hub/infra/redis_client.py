"""The process's one Redis client (REDIS_URL): the sync waits' notifications, the API keys'
limits, the upstreams' budgets and circuits, and the broker's sends on the hub's own Redis use
it. Its connection pool is thread- and greenlet-safe."""

import redis
from django.conf import settings

from hub.infra.singletons import per_process


@per_process
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, health_check_interval=30)
