"""What an upstream is doing right now, read from its shared state in Redis: for the admin,
`hub_upstream list` and /metrics."""

from dataclasses import dataclass

import redis

from hub.infra import backends
from hub.infra.redis_client import redis_script
from upstreams.budget import INITIAL_LIMIT, state_key
from upstreams.circuit import CLOSED, HALF_OPEN, OPEN
from upstreams.targets import learned_cap

_READ = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local opened_until = tonumber(redis.call('HGET', KEYS[4], 'opened_until'))
local circuit = -1
if opened_until then circuit = math.max(0, opened_until - now) end
return {
  redis.call('ZCOUNT', KEYS[1], now, '+inf'),
  redis.call('GET', KEYS[2]) or '',
  math.max(0, redis.call('PTTL', KEYS[3])),
  circuit,
  redis.call('HGET', KEYS[5], 'errors') or '',
  redis.call('HGET', KEYS[5], 'latency') or '',
  redis.call('GET', KEYS[6]) or '',
}
"""


@dataclass(frozen=True)
class UpstreamState:
    circuit: str = CLOSED
    slots_in_use: int = 0
    learned_limit: float | None = None  # None: nothing learned (not called yet, or configured and no 429)
    ceiling: int | None = None  # calls in flight at the last 429s; None: none, or since grown past
    cooldown_seconds: float = 0.0
    error_ratio: float | None = None  # moving average of the calls' failures (0 to 1)
    latency_seconds: float | None = None  # moving average of successful calls' time
    known: bool = True  # False: Redis could not be read (or is not used)

    def limit(self, configured: int | None) -> int:
        """The calls in flight an acquire allows now: min(configured, learned); nothing learned
        yet, the configured limit, else budget.INITIAL_LIMIT (as budget.acquire decides)."""
        cap = configured or learned_cap()
        learned = self.learned_limit if self.learned_limit is not None else configured or INITIAL_LIMIT
        return max(1, int(min(cap, learned)))


def _number(raw) -> float | None:
    return float(raw) if raw not in (b"", "", None) else None


def upstream_state(upstream_id: str) -> UpstreamState:
    if not backends.redis():
        return UpstreamState(known=False)
    parts = ("slots", "learned", "cooldown", "circuit", "stats", "ceiling")
    try:
        raw = redis_script(_READ)(keys=[state_key(upstream_id, part) for part in parts])
    except (redis.RedisError, OSError):
        return UpstreamState(known=False)
    slots, learned, cooldown_ms, circuit_ms, errors, latency, ceiling = raw
    learned, ceiling = _number(learned), _number(ceiling)
    return UpstreamState(
        circuit=CLOSED if int(circuit_ms) < 0 else OPEN if int(circuit_ms) > 0 else HALF_OPEN,
        slots_in_use=int(slots),
        learned_limit=min(learned, learned_cap()) if learned is not None else None,
        ceiling=int(ceiling) if ceiling else None,
        cooldown_seconds=int(cooldown_ms) / 1000,
        error_ratio=_number(errors),
        latency_seconds=_number(latency),
    )


def describe(state: UpstreamState, configured: int | None) -> str:
    """One line for a person: circuit, slots in use of the limit, cooldown, error ratio, latency."""
    if not state.known:
        return "state unknown (no Redis)"
    text = f"{state.circuit}, {state.slots_in_use} of {state.limit(configured)} in flight"
    if state.learned_limit is not None:
        ceiling = f", 429s from {state.ceiling}" if state.ceiling else ""
        text += f" (learned {state.learned_limit:.1f}{ceiling})"
    if state.cooldown_seconds:
        text += f", cooling down {state.cooldown_seconds:.1f} s"
    if state.error_ratio is not None:
        text += f", errors {state.error_ratio:.0%}"
    if state.latency_seconds is not None:
        text += f", latency {state.latency_seconds:.2f} s"
    return text
