"""An upstream's shared budget and circuit, decided by Lua scripts in the real Redis: slots,
images per minute, the shared cooldown of a 429 and its decrease of the learned limit (how that
limit moves over many calls: test_learned_limit), a lapsed lease, and
the circuit's open → half-open → closed; and the order upstreams are tried in."""

import collections
import time

import pytest

from upstreams import budget, circuit
from upstreams.routing import Choice, Wait, choose, ordered
from upstreams.state import upstream_state
from upstreams.targets import Target


@pytest.fixture(autouse=True)
def _redis(settings):
    if not settings.REDIS_URL:
        pytest.skip("budgets and circuits are shared through Redis; without it there are none")


def test_slots_are_shared_and_come_back(target):
    up = target(concurrency=2)
    first, second = budget.acquire(up, images=1), budget.acquire(up, images=1)
    assert isinstance(first, budget.Grant) and isinstance(second, budget.Grant)
    assert budget.acquire(up, images=1) == budget.Busy(0, "concurrency")
    assert upstream_state(up.upstream_id).slots_in_use == 2
    budget.release(first, outcome="ok", seconds=0.2)
    assert isinstance(budget.acquire(up, images=1), budget.Grant)


def test_a_slot_whose_lease_is_not_renewed_lapses(target, settings):
    settings.GENERATION_LEASE_SECONDS = 1
    up = target(concurrency=1)
    held = budget.acquire(up, images=1)
    budget._keeper().drop(up.upstream_id, held.slot)  # as if its process had died: no renewal
    assert isinstance(budget.acquire(up, images=1), budget.Busy)
    time.sleep(1.1)
    assert isinstance(budget.acquire(up, images=1), budget.Grant)


def test_images_per_minute_are_counted_in_a_sliding_window(target):
    up = target(images_per_minute=3)
    assert isinstance(budget.acquire(up, images=2), budget.Grant)
    busy = budget.acquire(up, images=2)
    assert busy.reason == "minute" and 59 < busy.wait_seconds <= 60
    assert isinstance(budget.acquire(up, images=1), budget.Grant)


def test_a_429_cools_the_upstream_down_for_everyone_and_lowers_its_limit_once_per_burst(target):
    up = target()  # no configured limit: learned
    grants = [budget.acquire(up, images=1) for _ in range(8)]
    assert all(isinstance(grant, budget.Grant) for grant in grants)
    assert budget.rate_limited(up, retry_after=0.4) == pytest.approx(7.2)  # 8 in flight, × 0.9
    assert budget.rate_limited(up, retry_after=0.4) is None  # the same burst lowers it once
    busy = budget.acquire(up, images=1)
    assert busy.reason == "cooldown" and 0.2 < busy.wait_seconds <= 0.4
    for grant in grants:
        budget.release(grant, outcome="rate_limited", seconds=0.1)
    time.sleep(0.45)
    taken = [budget.acquire(up, images=1) for _ in range(8)]
    assert [isinstance(grant, budget.Grant) for grant in taken] == [True] * 7 + [False]
    state = upstream_state(up.upstream_id)
    assert (state.learned_limit, state.ceiling, state.limit(None)) == (pytest.approx(7.2), 8, 7)
    for grant in taken[:7]:
        budget.release(grant, outcome="ok", seconds=0.1)
    state = upstream_state(up.upstream_id)
    assert state.error_ratio is not None and state.latency_seconds == pytest.approx(0.1)


def test_a_configured_limit_still_learns_from_429s(target):
    up = target(concurrency=10)
    assert upstream_state(up.upstream_id).limit(10) == 10  # nothing learned: the configured limit
    grants = [budget.acquire(up, images=1) for _ in range(3)]
    budget.rate_limited(up, retry_after=0.001)
    time.sleep(0.01)
    assert upstream_state(up.upstream_id).limit(10) == 2  # min(10, 3 × 0.9)
    assert all(isinstance(grant, budget.Grant) for grant in grants)


def test_the_circuit_opens_is_probed_once_and_closes(target, settings):
    settings.UPSTREAM_FAILURE_THRESHOLD = 3
    settings.UPSTREAM_COOLOFF_SECONDS = 0.3
    up = target()
    for _ in range(2):
        circuit.circuit_record(up, ok=False)
    circuit.circuit_record(up, ok=True)  # a success in between: counting starts again
    for _ in range(2):
        circuit.circuit_record(up, ok=False)
    assert circuit.circuit_states([up])[0].state == circuit.CLOSED
    circuit.circuit_record(up, ok=False)
    (state,) = circuit.circuit_states([up])
    assert state.state == circuit.OPEN and 0.2 < state.probe_in_seconds <= 0.3
    assert choose([up], images=1) is None  # nowhere to go
    time.sleep(0.35)
    assert circuit.circuit_states([up])[0].state == circuit.HALF_OPEN
    probe = choose([up], images=1)
    assert isinstance(probe, Choice) and probe.probe is not None
    assert choose([up], images=1) is None  # exactly one probe
    circuit.circuit_record(up, ok=False)  # the probe failed: open again
    assert circuit.circuit_states([up])[0].state == circuit.OPEN
    time.sleep(0.35)
    assert isinstance(choose([up], images=1), Choice)
    circuit.circuit_record(up, ok=True)
    assert circuit.circuit_states([up])[0].state == circuit.CLOSED
    assert upstream_state(up.upstream_id).circuit == circuit.CLOSED


def test_calls_in_flight_when_the_circuit_opened_do_not_close_or_reopen_it(target, settings):
    """Calls sent before the upstream failed end after its circuit opened: only its probe's outcome
    may close it (or open it for another cool-off)."""
    settings.UPSTREAM_FAILURE_THRESHOLD = 2
    settings.UPSTREAM_COOLOFF_SECONDS = 0.5
    up = target()
    for _ in range(2):
        circuit.circuit_record(up, ok=False)
    (opened,) = circuit.circuit_states([up])
    assert opened.state == circuit.OPEN
    time.sleep(0.1)
    circuit.circuit_record(up, ok=True, seconds=2.0)  # sent 2 s ago, before it opened
    circuit.circuit_record(up, ok=False, seconds=2.0)
    (state,) = circuit.circuit_states([up])
    assert state.state == circuit.OPEN and state.probe_in_seconds < opened.probe_in_seconds  # its cool-off runs on
    time.sleep(0.45)
    probe = choose([up], images=1)
    assert isinstance(probe, Choice) and probe.probe is not None
    circuit.circuit_record(up, ok=True, seconds=0.01)  # the probe, sent after it opened
    assert circuit.circuit_states([up])[0].state == circuit.CLOSED


def test_choice_goes_by_priority_then_spills_over_a_full_budget(target):
    first, second = target(priority=0, concurrency=1), target(priority=1, concurrency=1)
    assert choose([second, first], images=1).target == first
    assert choose([second, first], images=1).target == second  # the first is full
    assert choose([second, first], images=1) == Wait(0, "concurrency")


def test_equal_priorities_share_by_weight():
    heavy = Target(upstream_id="h", name="h", adapter="openai", weight=3)
    light = Target(upstream_id="l", name="l", adapter="openai", weight=1)
    low = Target(upstream_id="z", name="z", adapter="openai", priority=5, weight=100)
    firsts = collections.Counter(ordered([light, low, heavy])[0].name for _ in range(2000))
    assert firsts["z"] == 0
    assert 0.70 < firsts["h"] / 2000 < 0.80
    assert [t.name for t in ordered([low, heavy])] == ["h", "z"]
