"""Which upstream a call goes to: among the model's upstreams, lowest priority first, weighted at
random among equals; an open circuit is skipped (a half-open one takes its one probe), and one
in cooldown or without a free slot is passed over for the next that has room. When none has
room the call waits for the soonest; when every one is open (or was given up on for this
call), it has nowhere to go."""

import logging
import random
import uuid
from dataclasses import dataclass

import redis

from hub.infra import backends
from hub.infra.redis_client import redis_script
from upstreams import budget, circuit
from upstreams.targets import Target

logger = logging.getLogger(__name__)

# KEYS: budget.release_keys, circuit.record_keys; ARGV: budget.release_args, circuit.record_args
_CALL_ENDED = (
    budget.NOW_LUA
    + budget.RELEASE_LUA
    + circuit.RECORD_LUA
    + """
budget_release(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5]), ARGV[6], ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]))
return circuit_record(KEYS[5], KEYS[6], ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13]),
  tonumber(ARGV[14]), now)
"""
)


@dataclass(frozen=True)
class Choice:
    grant: budget.Grant
    probe: str | None = None  # the probe token, when this call probes a half-open upstream

    @property
    def target(self) -> Target:
        return self.grant.target


@dataclass(frozen=True)
class Wait:
    seconds: float  # 0: a slot frees when some call ends (unknown when): look again soon
    reason: str


def ordered(targets: list[Target]) -> list[Target]:
    """By priority (lower first); within one priority a weighted random order (each next pick
    drawn by weight among those left)."""
    result = []
    for priority in sorted({target.priority for target in targets}):
        pool = [target for target in targets if target.priority == priority]
        while pool:
            pick = random.choices(pool, weights=[target.weight for target in pool])[0]
            result.append(pick)
            pool.remove(pick)
    return result


def choose(targets: list[Target], *, images: int) -> Choice | Wait | None:
    """A slot on the first upstream (in `ordered` order) that is usable and has room; else how
    long to wait; None when every upstream is open."""
    candidates = ordered(targets)
    waits = []
    for target, state in zip(candidates, circuit.circuit_states(candidates), strict=True):
        probe = None
        if state.state == circuit.OPEN:
            continue
        if state.state == circuit.HALF_OPEN:
            probe = uuid.uuid4().hex
            if not circuit.probe_take(target, token=probe):
                continue  # another call is the probe
        decision = budget.acquire(target, images=images)
        if isinstance(decision, budget.Grant):
            return Choice(decision, probe)
        if probe is not None:
            circuit.probe_give_back(target, token=probe)
        waits.append(decision)
    if not waits:
        return None
    soonest = min(waits, key=lambda busy: busy.wait_seconds)
    return Wait(soonest.wait_seconds, soonest.reason)


def call_ended(choice: Choice, *, outcome: str, seconds: float, upstream_ok: bool) -> None:
    """A call sent with `choice` ended, and says whether its upstream is healthy (`upstream_ok`):
    its slot's release (budget.release) and its circuit's record (circuit.circuit_record) in one
    round trip — the worker's one Redis call after each provider call."""
    grant, target = choice.grant, choice.target
    if grant.slot is None:  # nothing held (Redis was unavailable when it was taken)
        circuit.circuit_record(target, ok=upstream_ok, seconds=seconds)
        return
    if not backends.redis():
        return
    keys = budget.release_keys(grant) + circuit.record_keys(target)
    args = budget.release_args(grant, outcome=outcome, seconds=seconds) + circuit.record_args(
        ok=upstream_ok, seconds=seconds
    )
    try:
        change = redis_script(_CALL_ENDED)(keys=keys, args=args)
    except (redis.RedisError, OSError) as exc:  # the slot lapses with its lease
        logger.warning("upstream %s: slot not freed, circuit not updated, Redis unavailable: %s", target.name, exc)
        return
    circuit.recorded(target, change)
