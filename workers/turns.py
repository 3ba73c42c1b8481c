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

from django.conf import settings
from django.db import DatabaseError, connection

from generations import fair
from generations.catalog import model_for_run
from generations.models import ImageModel
from upstreams.routing import Wait
from workers import upstream_calls
from workers.providers import ProviderError
from workers.runner import ClaimUnavailable, generation_run

logger = logging.getLogger(__name__)


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

    held = None
    while True:
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
            if generation_run(taken.generation_id, held=held):
                return
        except ClaimUnavailable:
            fair.fair_give_back(model_id, taken)
            if held is not None:
                upstream_calls.slot_give_back(held)
            raise
        logger.info("generation %s: taken from the fair order but not claimable; taking the next", taken.generation_id)
    if held is not None:
        upstream_calls.slot_give_back(held)
