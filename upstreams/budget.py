"""Each upstream's shared budget, in Redis: calls in flight and images per minute, across every
worker process and replica, each decision one Lua script (as apikeys.ratelimit decides the API
keys' limits), so no two workers can both take the last slot.

- Calls in flight: a sorted set of slot ids scored by their lease's end. A call takes a slot
  before it is sent and frees it when it ends; while it runs, its process renews the lease
  every third of GENERATION_LEASE_SECONDS (one loop per process, as workers.lease renews the
  generations'). A worker that dies stops renewing: its slots lapse with the lease, and the
  next acquire drops them.
- Images per minute: a sliding window log of (images, taken at), as apikeys.ratelimit's.
- Cooldown: a key set for the Retry-After of a 429, shared by every worker: while it lives no
  call is sent to that upstream.
- The learned limit (for an upstream whose provider limit is not configured, or lower than
  configured), shared by every worker. An unconfigured upstream starts at INITIAL_LIMIT, not
  at learned_cap (a burst would send a worker's 1,000 calls at once and collect 980 429s), and
  slow-starts (one more per success: doubling per window) until its first 429. A 429 remembers
  the calls in flight then as the upstream's ceiling and takes the limit down by DECREASE (×0.9,
  not ×0.5: the ceiling says where the provider's limit is, and the limit climbs back to just
  below it, one more per success, within a few calls); at most once per guard window (the
  cooldown, or one call's time if longer) — the later 429s of that window only lower the limit
  to under the calls then in flight (and the ceiling to them, never up), as each refused call
  frees its slot: a burst over the limit, or a provider limit that fell, is measured in one
  window; and a probe refused inside an earlier window (a Retry-After longer than ten windows of
  calls) takes the limit back under the ceiling, not after its next cooldown. Just below the
  ceiling it probes one call above it every PROBE_WINDOWS windows of successes (a window:
  `limit` of them) rather than every window, so a steady upstream sees a 429 — and a cooldown,
  during which its calls drain — rarely; once the limit is a whole call past the ceiling
  without a 429 (the provider's limit grew), the ceiling is marked passed (0) and the limit
  grows by one per window (additive increase). It grows only while it is used (at least half of
  it in flight; a probe: all of it), so a quiet spell cannot inflate it. An acquire holds calls
  to min(configured, learned).

Over budget, `acquire` says how long to wait rather than failing: the caller waits (up to the
generation's deadline; woken by the release of a slot: upstreams.freed) and asks again.
Without Redis (the embedded default: one worker process) there is no budget: every acquire is
granted, and a 429 is waited out by its own call.
"""

import logging
import threading
import time
import uuid
from dataclasses import dataclass

import redis
from django.conf import settings

from hub.infra import backends
from hub.infra.redis_client import redis_script
from hub.infra.singletons import per_process
from upstreams import freed
from upstreams.targets import Target, learned_cap

logger = logging.getLogger(__name__)

PREFIX = "hub:up:"
WINDOW_MS = 60_000
DEFAULT_COOLDOWN_MS = 1_000  # a 429 without Retry-After
INITIAL_LIMIT = 10  # calls in flight an unconfigured upstream starts from, before any 429
DECREASE = 0.9  # a 429's multiplicative decrease of the learned limit
PROBE_WINDOWS = 10  # just below the ceiling: one call more after this many windows of successes
STATS_TTL_MS = 24 * 3600 * 1000


def state_key(upstream_id: str, part: str) -> str:
    return f"{PREFIX}{upstream_id}:{part}"


# Redis's clock in milliseconds, as `now`: the first line of every script that reads time.
NOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# An acquire as a Lua function, for this module's script and for the scripts that take a slot
# with other steps in the same round trip (workers.turns). Its keys: `acquire_keys`; `cap` and
# `unlearned`: `limit_args`.
ACQUIRE_LUA = """
local function budget_acquire(slots, minute, cooldown, learned_key, slot, lease, cap, unlearned, per_min, images, now)
  local cooling = redis.call('PTTL', cooldown)
  if cooling > 0 then return {0, cooling, 'cooldown'} end
  local limit = cap
  local learned = tonumber(redis.call('GET', learned_key)) or unlearned
  if learned < limit then limit = math.max(1, math.floor(learned)) end
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  local held = redis.call('ZCARD', slots)
  if held >= limit then return {0, 0, 'concurrency'} end
  if per_min > 0 then
    images = math.min(images, per_min)
    redis.call('ZREMRANGEBYSCORE', minute, '-inf', now - 60000)
    local entries = redis.call('ZRANGE', minute, 0, -1, 'WITHSCORES')
    local used = 0
    for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], '^(%d+):')) end
    if used + images > per_min then
      local need, freed, wait = used + images - per_min, 0, 60000
      for i = 1, #entries, 2 do
        freed = freed + tonumber(string.match(entries[i], '^(%d+):'))
        if freed >= need then wait = tonumber(entries[i + 1]) + 60000 - now break end
      end
      return {0, wait, 'minute'}
    end
    redis.call('ZADD', minute, now, images .. ':' .. slot)
    redis.call('PEXPIRE', minute, 60000)
  end
  redis.call('ZADD', slots, now + lease, slot)
  redis.call('PEXPIRE', slots, lease * 2)
  return {1, held + 1, limit}
end
"""

# KEYS: acquire_keys; ARGV: slot id, lease ms, cap, unlearned, images per minute, images
_ACQUIRE = (
    NOW_LUA
    + ACQUIRE_LUA
    + """
return budget_acquire(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), now)
"""
)

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 1
"""

# A release as a Lua function (as ACQUIRE_LUA: upstreams.routing ends a call with its circuit's
# record in the same round trip). Its KEYS and ARGV: `release_keys`, `release_args`. `initial`:
# the limit before anything was learned (0: configured, nothing learned before a 429).
RELEASE_LUA = """
local function budget_release(slots, learned_key, stats, ceiling_key, slot, outcome, cap, seconds, ttl, channel,
    upstream_id, initial, probe_windows)
  local held = redis.call('ZCARD', slots)
  if redis.call('ZREM', slots, slot) == 1 then redis.call('PUBLISH', channel, upstream_id) end
  local learned = tonumber(redis.call('GET', learned_key))
  if not learned and initial > 0 then learned = initial end
  if outcome == 'ok' and learned and learned < cap and held * 2 >= learned then
    local ceiling = tonumber(redis.call('GET', ceiling_key))
    if not ceiling then learned = learned + 1  -- no 429 yet: slow start
    elseif ceiling == 0 then learned = learned + 1 / learned  -- past the last ceiling: one per window
    elseif learned < ceiling - 1 then learned = math.min(ceiling - 1, learned + 1)  -- back below it
    elseif held >= math.floor(learned) then learned = learned + 1 / (learned * probe_windows)  -- probe
    end
    learned = math.min(cap, learned)
    if ceiling and ceiling > 0 and learned >= ceiling + 1 then redis.call('SET', ceiling_key, '0') end
    redis.call('SET', learned_key, tostring(learned))
  end
  if outcome ~= 'rejected' and outcome ~= 'unused' then
    local failed = 1
    if outcome == 'ok' then failed = 0 end
    local errors = tonumber(redis.call('HGET', stats, 'errors')) or failed
    redis.call('HSET', stats, 'errors', tostring(errors * 0.9 + failed * 0.1))
    if outcome == 'ok' then
      local latency = tonumber(redis.call('HGET', stats, 'latency')) or seconds
      redis.call('HSET', stats, 'latency', tostring(latency * 0.9 + seconds * 0.1))
    end
    redis.call('PEXPIRE', stats, ttl)
  end
end
"""

# KEYS: release_keys; ARGV: release_args
_RELEASE = (
    RELEASE_LUA
    + """
budget_release(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5]), ARGV[6], ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]))
return 1
"""
)

# KEYS: cooldown, learned, slots, decrease guard, ceiling, stats; ARGV: cooldown ms, the limit
# before anything was learned, decrease
_RATE_LIMITED = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
local held = redis.call('ZCARD', KEYS[3])
local learned = tonumber(redis.call('GET', KEYS[2])) or tonumber(ARGV[2])
local latency = tonumber(redis.call('HGET', KEYS[6], 'latency')) or 0
if redis.call('SET', KEYS[4], '1', 'NX', 'PX', math.max(ms, math.ceil(latency * 1000))) then
  redis.call('SET', KEYS[5], tostring(held))
  learned = math.max(1, math.min(learned, held) * tonumber(ARGV[3]))
  redis.call('SET', KEYS[2], tostring(learned))
  return tostring(learned)
end
local ceiling = tonumber(redis.call('GET', KEYS[5]))
if ceiling and held < ceiling then redis.call('SET', KEYS[5], tostring(held)) end
local lower = math.max(1, held * tonumber(ARGV[3]))
if lower < learned then
  redis.call('SET', KEYS[2], tostring(lower))
  return tostring(lower)
end
return false
"""


@dataclass(frozen=True)
class Grant:
    """A slot taken (slot None: no Redis, nothing held)."""

    target: Target
    slot: str | None


@dataclass(frozen=True)
class Busy:
    """Over budget: ask again in `wait_seconds` at the soonest (0: when a call ends, unknown)."""

    wait_seconds: float
    reason: str  # cooldown, concurrency or minute


def _run(script: str, *, keys: list[str], args: list):
    return redis_script(script)(keys=keys, args=args)


def lease_ms() -> int:
    return settings.GENERATION_LEASE_SECONDS * 1000


def _cap(target: Target) -> int:
    """The most calls in flight the upstream is let have: its configured limit, else learned_cap."""
    return target.concurrency or learned_cap()


def limit_args(target: Target) -> list[int]:
    """ACQUIRE_LUA's `cap` and `unlearned` for the upstream (_cap, _unlearned)."""
    return [_cap(target), _unlearned(target)]


def _unlearned(target: Target) -> int:
    """The calls in flight an acquire allows before anything is learned: the configured limit,
    else INITIAL_LIMIT (slow start grows it to what the provider takes, up to learned_cap)."""
    return target.concurrency or min(INITIAL_LIMIT, learned_cap())


def acquire(target: Target, *, images: int) -> Grant | Busy:
    """Take one of the upstream's slots (and `images` of its minute) for a call."""
    if not backends.redis():
        return Grant(target, None)
    slot = uuid.uuid4().hex
    args = [slot, lease_ms(), *limit_args(target), target.images_per_minute or 0, images]
    try:
        result = _run(_ACQUIRE, keys=acquire_keys(target), args=args)
    except (redis.RedisError, OSError) as exc:  # an outage of Redis must not stop paid traffic
        logger.warning("upstream %s: budget not enforced, Redis unavailable: %s", target.name, exc)
        return Grant(target, None)
    if not result[0]:
        return Busy(int(result[1]) / 1000, result[2].decode() if isinstance(result[2], bytes) else result[2])
    return granted(target, slot)


def acquire_keys(target: Target) -> list[str]:
    """ACQUIRE_LUA's keys for the upstream: slots, minute, cooldown, learned."""
    return [state_key(target.upstream_id, part) for part in ("slots", "minute", "cooldown", "learned")]


def granted(target: Target, slot: str) -> Grant:
    """The Grant of a slot ACQUIRE_LUA took (here or in a script of its caller's): its lease is
    renewed from now on."""
    _keeper().hold(target.upstream_id, slot)
    return Grant(target, slot)


def release(grant: Grant, *, outcome: str, seconds: float) -> None:
    """The call ended (`outcome`: ok, rate_limited, failed or rejected; unused: no call was sent
    with it) — free its slot and wake a waiter for it (upstreams.freed); a success widens the
    learned limit; the upstream's error ratio and latency (moving averages) follow."""
    if grant.slot is None:
        return
    try:
        _run(_RELEASE, keys=release_keys(grant), args=release_args(grant, outcome=outcome, seconds=seconds))
    except (redis.RedisError, OSError) as exc:  # the slot lapses with its lease
        logger.warning("upstream %s: could not free a slot: %s", grant.target.name, exc)


def release_keys(grant: Grant) -> list[str]:
    """RELEASE_LUA's keys: slots, learned, stats, ceiling."""
    return [state_key(grant.target.upstream_id, part) for part in ("slots", "learned", "stats", "ceiling")]


def release_args(grant: Grant, *, outcome: str, seconds: float) -> list:
    """RELEASE_LUA's arguments, once this process stops renewing the slot's lease (it is being
    freed: a release that does not reach Redis leaves it to lapse)."""
    _keeper().drop(grant.target.upstream_id, grant.slot)
    target = grant.target
    args = [grant.slot, outcome, _cap(target), round(seconds, 3), STATS_TTL_MS]
    return args + [freed.CHANNEL, target.upstream_id, 0 if target.concurrency else INITIAL_LIMIT, PROBE_WINDOWS]


def rate_limited(target: Target, *, retry_after: float | None) -> float | None:
    """The provider answered 429: every worker holds off this upstream for Retry-After (a second
    without one), and its learned limit comes down (by DECREASE once per guard window; then only
    to under the calls in flight of a later 429 of the same burst). The new learned limit, or
    None when it did not change (or without Redis)."""
    if not backends.redis():
        return None
    ms = max(1, round(retry_after * 1000)) if retry_after is not None else DEFAULT_COOLDOWN_MS
    parts = ("cooldown", "learned", "slots", "decreased", "ceiling", "stats")
    keys = [state_key(target.upstream_id, part) for part in parts]
    try:
        learned = _run(_RATE_LIMITED, keys=keys, args=[ms, _unlearned(target), DECREASE])
    except (redis.RedisError, OSError) as exc:
        logger.warning("upstream %s: could not record its 429: %s", target.name, exc)
        return None
    if learned is None:
        return None
    logger.warning(
        "upstream %s: 429, cooling down %.1f s; learned limit now %.1f", target.name, ms / 1000, float(learned)
    )
    return float(learned)


class _SlotKeeper:
    """Renews the leases of the slots this process holds: one loop per process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._held: dict[str, set[str]] = {}  # upstream id → slot ids
        threading.Thread(target=self._renew_forever, name="upstream-slot-keeper", daemon=True).start()

    def hold(self, upstream_id: str, slot: str) -> None:
        with self._lock:
            self._held.setdefault(upstream_id, set()).add(slot)

    def drop(self, upstream_id: str, slot: str) -> None:
        with self._lock:
            slots = self._held.get(upstream_id)
            if slots is not None:
                slots.discard(slot)
                if not slots:
                    del self._held[upstream_id]

    def _renew_forever(self) -> None:
        while True:  # as long as the process lives
            time.sleep(settings.GENERATION_LEASE_SECONDS / 3)
            with self._lock:
                held = {upstream_id: sorted(slots) for upstream_id, slots in self._held.items()}
            for upstream_id, slots in held.items():
                try:
                    _run(_RENEW, keys=[state_key(upstream_id, "slots")], args=[lease_ms(), *slots])
                except Exception:  # noqa: BLE001 — a Redis hiccup must not end renewal for good
                    logger.exception("upstream slot renewal failed; retrying next period")


_keeper = per_process(_SlotKeeper)  # a forked pool child makes its own
