"""Each upstream's circuit breaker, shared by every worker in Redis.

Closed: calls go. An upstream whose calls fail (5xx, timeouts, connection errors — not a 429,
not a refused prompt) UPSTREAM_FAILURE_THRESHOLD times in a row, each within a minute of the
last, is opened for UPSTREAM_COOLOFF_SECONDS: no call is sent to it, and its model's traffic goes
to its other upstreams. Once the cool-off is over it is half-open: exactly one call (whoever
takes the probe key first, SET NX) is let through; its success closes the circuit, its failure
opens it for another cool-off. A probe whose worker died frees the probe key with its lease.

Without Redis every circuit stays closed (the embedded default has one worker process).
"""

import logging
from dataclasses import dataclass

import redis
from django.conf import settings

from hub.infra import backends
from hub.infra.redis_client import redis_client, redis_script
from upstreams.budget import NOW_LUA, state_key
from upstreams.targets import Target

logger = logging.getLogger(__name__)

WINDOW_MS = 60_000
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

# A circuit's state as a Lua function (also read by workers.turns' script): milliseconds until it
# may be probed; -1: closed, 0: half-open.
STATE_LUA = """
local function circuit_state(circuit, now)
  local opened_until = tonumber(redis.call('HGET', circuit, 'opened_until'))
  if not opened_until then return -1 end
  return math.max(0, opened_until - now)
end
"""

# KEYS: the circuits; for each, circuit_state
_STATES = (
    NOW_LUA
    + STATE_LUA
    + """
local states = {}
for i = 1, #KEYS do states[i] = circuit_state(KEYS[i], now) end
return states
"""
)

# KEYS: circuit, probe; ARGV: probe token, probe ms. 1: this call is the probe.
_PROBE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local opened_until = tonumber(redis.call('HGET', KEYS[1], 'opened_until'))
if not opened_until or opened_until > now then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then return 1 end
return 0
"""

# A call's end on the circuit as a Lua function (upstreams.routing ends a call with its slot's
# release in the same round trip). Its KEYS and ARGV: `record_keys`, `record_args`.
# Returns 'closed' when this call closed an open circuit, 'opened' when it opened one, else ''.
# An open circuit changes only by a call sent after it opened (its probe): the calls in flight
# when it opened end after it — successes that closed it again, and failures that pushed its
# cool-off on, made it flap while they drained (bench outage: opened and closed over and over in
# the outage's first seconds, a sync call sent back to the failing key four times).
RECORD_LUA = """
local function circuit_record(circuit, probe, ok, threshold, cooloff, window, took, now)
  local opened_until = tonumber(redis.call('HGET', circuit, 'opened_until'))
  if opened_until and now - took < (tonumber(redis.call('HGET', circuit, 'opened_at')) or 0) then
    return ''
  end
  if ok == '1' then
    redis.call('DEL', circuit, probe)
    if opened_until then return 'closed' end
    return ''
  end
  local last = tonumber(redis.call('HGET', circuit, 'last_failure'))
  local failures = 1
  if last and now - last <= window then failures = tonumber(redis.call('HGET', circuit, 'failures')) + 1 end
  redis.call('HSET', circuit, 'failures', failures, 'last_failure', now)
  redis.call('PEXPIRE', circuit, cooloff + 3600000)
  if opened_until or failures >= threshold then
    redis.call('HSET', circuit, 'opened_until', now + cooloff, 'opened_at', now)
    redis.call('DEL', probe)
    return 'opened'
  end
  return ''
end
"""

# KEYS: circuit, probe; ARGV: ok (1/0), threshold, cool-off ms, window ms, the call's ms.
_RECORD = (
    NOW_LUA
    + RECORD_LUA
    + """
return circuit_record(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5]), now)
"""
)


@dataclass(frozen=True)
class CircuitState:
    state: str  # closed, open or half-open
    probe_in_seconds: float = 0.0  # open: when it may be probed


def circuit_key(target: Target) -> str:
    return state_key(target.upstream_id, "circuit")


def _probe_key(target: Target) -> str:
    return state_key(target.upstream_id, "probe")


def _run(script: str, *, keys: list[str], args: list):
    return redis_script(script)(keys=keys, args=args)


def circuit_states(targets: list[Target]) -> list[CircuitState]:
    """Each target's circuit, in one round trip (all closed without Redis, or Redis down)."""
    if not backends.redis() or not targets:
        return [CircuitState(CLOSED) for _ in targets]
    try:
        raw = _run(_STATES, keys=[circuit_key(target) for target in targets], args=[])
    except (redis.RedisError, OSError) as exc:
        logger.warning("upstream circuits unread, Redis unavailable (taken as closed): %s", exc)
        return [CircuitState(CLOSED) for _ in targets]
    return [
        CircuitState(CLOSED) if ms < 0 else CircuitState(OPEN, ms / 1000) if ms > 0 else CircuitState(HALF_OPEN)
        for ms in (int(value) for value in raw)
    ]


def probe_take(target: Target, *, token: str) -> bool:
    """Whether this call is the one probe of a half-open upstream."""
    try:
        return bool(_run(_PROBE, keys=[circuit_key(target), _probe_key(target)], args=[token, _probe_ms()]))
    except (redis.RedisError, OSError):
        return False


def probe_give_back(target: Target, *, token: str) -> None:
    """A probe that was not sent after all (no slot free): another call may probe."""
    client = redis_client()
    try:
        if client.get(_probe_key(target)) == token.encode():
            client.delete(_probe_key(target))
    except (redis.RedisError, OSError):
        pass  # it lapses with the lease


def _probe_ms() -> int:
    return settings.GENERATION_LEASE_SECONDS * 1000


def circuit_record(target: Target, *, ok: bool, seconds: float = 0.0) -> None:
    """A call to the upstream, which took `seconds`, succeeded, or failed for the upstream's own
    fault."""
    if not backends.redis():
        return
    try:
        change = _run(_RECORD, keys=record_keys(target), args=record_args(ok=ok, seconds=seconds))
    except (redis.RedisError, OSError) as exc:
        logger.warning("upstream %s: circuit not updated, Redis unavailable: %s", target.name, exc)
        return
    recorded(target, change)


def record_keys(target: Target) -> list[str]:
    """RECORD_LUA's keys: circuit, probe."""
    return [circuit_key(target), _probe_key(target)]


def record_args(*, ok: bool, seconds: float) -> list:
    """RECORD_LUA's arguments: ok (1/0), threshold, cool-off ms, window ms, the call's ms."""
    cooloff_ms = round(settings.UPSTREAM_COOLOFF_SECONDS * 1000)
    return [1 if ok else 0, settings.UPSTREAM_FAILURE_THRESHOLD, cooloff_ms, WINDOW_MS, round(seconds * 1000)]


def recorded(target: Target, change) -> None:
    """Say what RECORD_LUA changed: an opened circuit, or one its probe closed."""
    if change == b"opened":
        logger.warning(
            "upstream %s: circuit opened for %.0f s after repeated failures; its calls go to other upstreams",
            target.name,
            settings.UPSTREAM_COOLOFF_SECONDS,
        )
    elif change == b"closed":
        logger.warning("upstream %s: circuit closed, the probe succeeded", target.name)
