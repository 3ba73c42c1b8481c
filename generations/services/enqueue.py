"""A generation handed to the broker: its turn stamped in its model's fair order, its task
sent, `enqueued_at` stamped for the sweeper — first after its charge (generations.services.submit),
again when its worker died (`generation_requeue`, the sweeper's recovery)."""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from generations import errors, fair
from generations.models import Generation, GenerationEventKind, GenerationStatus
from generations.services.events import Event, events_write
from generations.services.lifecycle import generation_fail
from hub.broker import task_message_for_lpush, task_send
from hub.http.observability import current_request_id

logger = logging.getLogger(__name__)

RUN_TASK_NAME = "generations.run"  # the Celery task that runs one attempt (workers.tasks)
# The run task's header naming the fair order (a model) it takes its generation from; a task
# without it (no Redis, or sent by a hub before fair turns) runs its own generation.
FAIR_HEADER = "fair_model"


@dataclass(frozen=True)
class Enqueued:
    """A generation handed to the broker, and its place in its model's fair order as the
    hand-over found it (1: the next to be taken; None without an order)."""

    queue_position: int | None


def generation_enqueue(*, generation_id: str, stamp: bool = True, turn: fair.Turn | None = None) -> Enqueued | None:
    """Stamp the generation's turn in its model's fair order (generations.fair; `turn` as the
    submit knows it, else read here), hand its task to the broker and stamp `enqueued_at` (the
    creating transaction stamps it already: `stamp=False` saves a query on the hot path). If the
    broker is down the row is marked unsent (`enqueued_at` null) and the sweeper sends it later —
    or, for a sync request that is waiting right now, it is failed and refunded at once: None.
    On the hub's own Redis the fair stamp pushes the task itself, in its round trip."""
    # The worker's log lines for this generation carry the request id it was made under.
    headers = {"request_id": current_request_id()}
    position = None
    if fair.enabled():
        turn = turn or fair.turn_of(generation_id)
        pushed = _fair_push(turn, headers) if turn is not None else None
        if pushed is not None:
            position = pushed.position
            if pushed.outcome == fair.WAITING:  # in its order, which is being taken from: its task is on its way
                _stamp_enqueued(generation_id)
                return Enqueued(position)
            if pushed.task_sent:
                if stamp:
                    _stamp_enqueued(generation_id)
                return Enqueued(position)
            # its task takes the order's head, not necessarily this one
            headers[FAIR_HEADER] = turn.model_id
    try:
        task_send(
            name=RUN_TASK_NAME,
            task_id=generation_id,
            queue=settings.GENERATIONS_QUEUE,
            headers=headers,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
        )
    except Exception as exc:  # noqa: BLE001 — kombu raises transport-specific errors; none may lose the row
        logger.error("generation %s: broker unavailable: %s", generation_id, exc)
        if FAIR_HEADER in headers:  # no task for it: out of the order until the sweeper sends one
            fair.fair_remove(generation_id=generation_id, model_id=turn.model_id, n=turn.n)
        Generation.objects.filter(pk=generation_id).update(enqueued_at=None)
        generation = Generation.objects.get(pk=generation_id)
        if not generation.is_async:
            generation_fail(
                generation_id=generation_id,
                code=errors.QUEUE_UNAVAILABLE,
                message="The generation queue is unavailable right now; your credits were refunded. Please retry.",
            )
        return None
    if stamp:
        _stamp_enqueued(generation_id)
    return Enqueued(position)


def _fair_push(turn: fair.Turn, headers: dict) -> fair.Pushed | None:
    """fair_push, with the generation's task to push in the same script where the broker is the
    hub's own Redis."""
    queue = settings.GENERATIONS_QUEUE
    message = task_message_for_lpush(
        name=RUN_TASK_NAME, task_id=turn.generation_id, queue=queue, headers={**headers, FAIR_HEADER: turn.model_id}
    )
    return fair.fair_push(turn, task=None if message is None else (queue, message))


def _stamp_enqueued(generation_id: str) -> None:
    """The last hand-over to the broker: the sweeper re-sends what stays queued long past it."""
    Generation.objects.filter(pk=generation_id, status=GenerationStatus.QUEUED).update(enqueued_at=timezone.now())


def generation_requeue(*, generation_id: str, attempt: int) -> bool:
    """Hand an attempt whose worker died back to the queue (the sweeper's recovery path)."""
    now = timezone.now()
    with transaction.atomic():
        requeued = Generation.objects.filter(
            pk=generation_id, status=GenerationStatus.RUNNING, attempts=attempt, lease_expires_at__lt=now
        ).update(status=GenerationStatus.QUEUED, enqueued_at=None)
        if requeued:
            events_write(generation_id, [Event(GenerationEventKind.RETRIED, attempt, now, errors.WORKER_LOST)])
    if requeued:
        logger.warning("generation %s: worker lost during attempt %s; re-queued", generation_id, attempt)
        generation_enqueue(generation_id=generation_id)
    return bool(requeued)
