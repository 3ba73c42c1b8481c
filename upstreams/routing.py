"""Which upstream a call goes to: among the model's upstreams, lowest priority first, weighted at
random among equals; an open circuit is skipped (a half-open one takes its one probe), and one
in cooldown or without a free slot is passed over for the next that has room. When none has
room the call waits for the soonest; when every one is open (or was given up on for this
call), it has nowhere to go."""

import random
import uuid
from dataclasses import dataclass

from upstreams import budget, circuit
from upstreams.targets import Target


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
