"""Late binding: a generation's task runs the next fair generation of its model, not its own.

A task first takes a slot of its model's upstreams (waiting, woken when one frees), and only
then takes the head of the model's fair order (generations.fair) — which may not be its own —
and runs it with that slot. So the order is decided when capacity frees, not when the messages
were queued: another account's one generation, stamped at the order's virtual time, goes ahead
of the 10,000 an account queued before it.

Nothing runs twice: a generation runs only once claimed (generation_claim's guarded update,
lease and fencing token), whichever task took it. Nothing is lost: every generation in an order
has its own task, and a task leaves only after it ran one, or found the order empty; a taken
generation that is not claimable (canceled, finished, deleted) hands the slot to the next. A
task whose database is down puts what it took back in its place and is retried.
"""

import logging
import time
import uuid

import redis
from django.conf import settings
from django.db import DatabaseError, connection

from generations import completion, fair
from generations.catalog import model_for_run
from generations.models import ImageModel
from hub.infra.redis_client import redis_script
from upstreams import budget, circuit
from upstreams.routing import Choice, Wait, ordered
from upstreams.targets import Target
from workers import upstream_calls
from workers.providers import ProviderError
from workers.runner import ClaimUnavailable, generation_run

logger = logging.getLogger(__name__)

# The common turn in one round trip: the order's head, the upstreams' circuits, a slot of the
# first closed one with room (routing.choose's order) and the head taken with it. Anything else
# — an empty order, a half-open circuit (its probe), every upstream busy or open — returns what
# it found and takes nothing: the turn then goes the step-by-step way (generation_turn).
# KEYS: fair.take_keys_args, then per upstream: its circuit and budget.acquire_keys
# ARGV: the order's ttl ms, the lease ms, the slot id, the start channels' prefix, then per
# upstream: budget.limit_args and its images per minute
_TAKE = (
    budget.NOW_LUA
    + circuit.STATE_LUA
    + budget.ACQUIRE_LUA
    + fair.POP_LUA
    + """
local head = redis.call('ZRANGE', KEYS[1], 0, 0)
if #head == 0 then return {'empty'} end
local images = tonumber(string.match(head[1], ':(%d+)$'))
local ttl, lease, slot = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local found = 'open'
for i = 0, (#KEYS - 3) / 5 - 1 do
  local k, a = 3 + i * 5, 4 + i * 3
  local state = circuit_state(KEYS[k + 1], now)
  if state == 0 then return {'half-open'} end
  if state < 0 then
    local decision = budget_acquire(KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], slot, lease,
      tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), images, now)
    if decision[1] == 1 then
      local taken = fair_pop(KEYS[1], KEYS[2], KEYS[3], ttl, ARGV[4])
      return {'taken', i + 1, taken[1], taken[2], taken[3]}
    end
    found = 'busy'
  end
end
return {found}
"""
)


def generation_turn(*, model_id: str) -> None:
    """Run the next generation of the model's fair order once a slot is held for it; nothing
    when the order is (or becomes) empty."""
    try:
        targets = upstream_calls.targets_of(model_for_run(model_id))
        upstream_calls.adapters_make(targets)
    except (ProviderError, ImageModel.DoesNotExist):
        targets = []  # no slot to wait for: the generation's own attempt says what is wrong
    except DatabaseError as exc:  # nothing taken yet: the task is retried
        raise ClaimUnavailable(str(exc)) from exc
    # Back to the pool before waiting for a slot: a task that read the catalog or the routes
    # (every CATALOG_CACHE_SECONDS, by every task starting then) would hold its connection
    # through the wait, and a backlog of waiting tasks ran the worker's pool dry (bench
    # learned-limit at 2,000: claims timed out after 30 s).
    connection.close()
    deadline = time.monotonic() + settings.GENERATION_TIMEOUT_SECONDS

    def waiting() -> bool:
        return fair.fair_head_images(model_id) is not None

    held = taken = None
    first = _take(model_id, targets) if targets else None
    if first == "empty":
        return  # nothing waits: this task's generation was run by another task
    if first is not None:
        held, taken = first
    while True:
        if taken is None:
            images = fair.fair_head_images(model_id)
            if images is None:
                break  # nothing waits: this task's generation was run by another task
            if held is None and targets:
                held = upstream_calls.slot_take(targets, images=images, deadline=deadline, keep_waiting=waiting)
                if isinstance(held, Wait):  # the order emptied (or everything in it is overdue)
                    return
                # None: every upstream is open; the next generation fails at once, as without turns.
            taken = fair.fair_take(model_id)
            if taken is None:
                break
        try:
            if generation_run(taken.generation_id, held=held, announce=taken.watched):
                return
        except ClaimUnavailable:
            fair.fair_give_back(model_id, taken)
            if held is not None:
                upstream_calls.slot_give_back(held)
            raise
        logger.info("generation %s: taken from the fair order but not claimable; taking the next", taken.generation_id)
        taken = None
    if held is not None:
        upstream_calls.slot_give_back(held)


def _take(model_id: str, targets: list[Target]) -> tuple[Choice, fair.Taken] | str | None:
    """A slot and the order's head taken with it, in one round trip (_TAKE); "empty" when the
    order is; None when the turn must go step by step (a circuit half-open, every upstream busy
    or open, Redis unreachable: the steps say what to do)."""
    candidates = ordered(targets)
    slot = uuid.uuid4().hex
    keys, args = fair.take_keys_args(model_id)
    args += [budget.lease_ms(), slot, completion.STARTED_PREFIX]
    for target in candidates:
        keys += [circuit.circuit_key(target), *budget.acquire_keys(target)]
        args += [*budget.limit_args(target), target.images_per_minute or 0]
    try:
        result = redis_script(_TAKE)(keys=keys, args=args)
    except (redis.RedisError, OSError):
        return None
    found = result[0].decode()
    if found == "taken":
        target = candidates[int(result[1]) - 1]
        return Choice(budget.granted(target, slot)), fair.taken_of(result[2:5])
    return "empty" if found == "empty" else None
