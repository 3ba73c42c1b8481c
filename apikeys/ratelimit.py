"""Per-key limits in the shared Redis (the completion notifications' server), each decided by
one Lua script, so concurrent requests on many web processes cannot both pass a check that
only one fits (no read-modify-write).

- Images per minute: a sliding window log — one sorted-set entry per accepted request, scored
  by Redis' own clock, whose member carries its cost (n images). Exact over any 60 s (a fixed
  window lets twice the limit through across its edge), and an entry can be given back when
  the request fails afterwards.
- Concurrency: a sorted set of the key's unfinished generation ids, scored by when they took
  their slot. Released when the generation finishes; entries older than a generation can live
  are dropped by the script itself, and the sweeper drops finished or unknown ones sooner.

Keys are namespaced `hub:rl:` and expire when unused, so nothing grows forever.
"""

from dataclasses import dataclass

from hub.infra.redis_client import redis_client, redis_script

PREFIX = "hub:rl:"
WINDOW_MS = 60_000

_WINDOW_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, limit, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], '^(%d+):')) end
if used + cost <= limit then
  redis.call('ZADD', KEYS[1], now, cost .. ':' .. ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  local oldest = now
  if #entries > 0 then oldest = tonumber(entries[2]) end
  return {1, used + cost, oldest + window - now}
end
local need, freed, wait = used + cost - limit, 0, window
for i = 1, #entries, 2 do
  freed = freed + tonumber(string.match(entries[i], '^(%d+):'))
  if freed >= need then wait = tonumber(entries[i + 1]) + window - now break end
end
local reset = window
if #entries > 0 then reset = tonumber(entries[2]) + window - now end
return {0, used, wait, reset}
"""

_SLOT_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, max_age = tonumber(ARGV[1]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - max_age)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return {1, redis.call('ZCARD', KEYS[1])} end
local held = redis.call('ZCARD', KEYS[1])
if held < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], max_age)
  return {1, held + 1}
end
return {0, held}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    used: int
    retry_after_ms: int = 0
    reset_ms: int = 0


def _run(script: str, *, key: str, args: list):
    """Run a script by its SHA (EVALSHA; loaded once per Redis server), not its whole text."""
    return redis_script(script)(keys=[key], args=args)


def _window_key(name: str) -> str:
    return f"{PREFIX}img:{name}"


def _slots_key(name: str) -> str:
    return f"{PREFIX}slots:{name}"


def window_take(*, name: str, token: str, cost: int, limit: int) -> Decision:
    """Take `cost` from the sliding minute of `name` if it fits under `limit`."""
    result = _run(_WINDOW_TAKE, key=_window_key(name), args=[WINDOW_MS, limit, cost, token])
    if result[0]:
        return Decision(True, int(result[1]), reset_ms=int(result[2]))
    return Decision(False, int(result[1]), retry_after_ms=int(result[2]), reset_ms=int(result[3]))


def window_give_back(*, name: str, token: str, cost: int) -> None:
    """Undo a `window_take` whose request failed before it was charged."""
    redis_client().zrem(_window_key(name), f"{cost}:{token}")


def slot_take(*, name: str, member: str, limit: int, max_age_seconds: int) -> Decision:
    """Hold one of `limit` slots of `name` for `member`; taking a held slot again is a no-op."""
    result = _run(_SLOT_TAKE, key=_slots_key(name), args=[limit, member, max_age_seconds * 1000])
    return Decision(bool(result[0]), int(result[1]))


def slot_release(*, name: str, member: str, client=None) -> None:
    """Free `member`'s slot of `name`; with `client` (a redis-py pipeline) the command is queued
    on it, for the caller to send with its others."""
    (client or redis_client()).zrem(_slots_key(name), member)


def slots_held() -> dict[str, dict[str, float]]:
    """Every slot set: name → {member: unix seconds it was taken} (the sweeper's reconcile)."""
    client = redis_client()
    held = {}
    for key in client.scan_iter(match=_slots_key("*"), count=500):
        name = key.decode()[len(_slots_key("")) :]
        held[name] = {member.decode(): score / 1000 for member, score in client.zrange(key, 0, -1, withscores=True)}
    return held


def slots_drop(*, name: str, members: list[str]) -> int:
    return redis_client().zrem(_slots_key(name), *members) if members else 0
