"""Exit 0 if the PostgreSQL and Redis URLs given as arguments both answer."""

import sys

import psycopg
import redis


def main(pg_url: str, redis_url: str) -> int:
    try:
        psycopg.connect(pg_url.replace("postgres://", "postgresql://", 1), connect_timeout=3).close()
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except (psycopg.Error, redis.RedisError, OSError) as exc:
        print(f"service probe failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
