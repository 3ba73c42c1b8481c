"""A generation's life after its charge and its hand-over to the broker (generations.services.enqueue):
claimed by a worker for an attempt, finished (succeeded, failed, canceled) and refunded what it did not deliver.

State changes are conditional updates on the generation row (queued → running → succeeded |
failed | canceled), so a redelivered or duplicated task cannot finish a generation twice. Each
write has one statement (claim, finish), run alone in autocommit on the worker's hot path and
inside a transaction when more must commit with it (a webhook's delivery, a refund).
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apikeys.services import api_key_usage_refund
from billing.services import account_get_or_create, credits_refund
from generations import completion, errors, fair
from generations.catalog import model_for_run
from generations.limits import slot_release_and_announce
from generations.models import (
    FINISHED,
    GeneratedImage,
    Generation,
    GenerationEventKind,
    GenerationStatus,
    WebhookEvent,
)
from generations.services.events import ROW_ATTEMPT, Event, events_sql, events_write
from generations.webhooks import webhook_delivery_create
from hub.compiled import columns_sql, query_instances
from hub.http.errors import NotFound
from hub.infra import backends, metrics
from hub.infra.timefmt import utc_day

logger = logging.getLogger(__name__)

# Where the database writes in common table expressions (hub.infra.backends), a claim and its
# event, a finish and its images and events are one statement; elsewhere, and with this off
# (tests compare the two), the same statements run one after the other, in a transaction.
ONE_STATEMENT_TRANSITIONS = True


@dataclass(frozen=True)
class ProviderCall:
    """An attempt's call to the provider (workers.runner): its two events are written with the
    attempt's finish, by the finish's statement — no round trip of their own on the worker's hot
    path. (A worker lost during the call leaves its claim's event and the sweeper's `retried`.)"""

    started_at: datetime
    latency_ms: int
    outcome: str  # ok, or the ProviderError's kind (timeout, rate_limited, rejected …)
    images: int = 0  # how many the provider returned
    # The tokens it said it used, as OpenAI's answer has them (upstreams.costs.Usage.as_response),
    # stored on the generation by its finish's statement and repeated in its answer; None: not said.
    usage: dict | None = None

    def events(self, attempt: int) -> list[Event]:
        ended = self.started_at + timedelta(milliseconds=self.latency_ms)
        detail = {"images": self.images} if self.outcome == "ok" else {}
        return [
            Event(GenerationEventKind.PROVIDER_CALL_STARTED, attempt, self.started_at),
            Event(GenerationEventKind.PROVIDER_CALL_ENDED, attempt, ended, self.outcome, self.latency_ms, detail),
        ]


# A row of another table that a finish writes with its statement: its INSERT … SELECT for a
# condition (a FROM and a WHERE): hub.compiled.insert_when of an unsaved instance.
Row = Callable[[str], tuple[str, list]]


@dataclass(frozen=True)
class StoredImage:
    index: int
    storage_key: str
    content_type: str
    width: int
    height: int
    byte_size: int


def generation_claim(*, generation_id: str, announce: bool = True) -> Generation | None:
    """Take the generation for one attempt; None if it is not ours to run.

    Claimable: queued, or running under a lease that ran out (its worker died). Each claim
    bumps `attempts`, the fencing token later writes are checked against. A generation whose
    workers died `GENERATION_MAX_ATTEMPTS` times is failed and refunded instead (poison message).
    The claim is the `started` webhook event: recorded in the claim's transaction, once; and
    it wakes the generation's events streams (generations.completion), after the commit —
    unless `announce` is off: its worker found nobody watching it (workers.turns).

    A generation without a webhook — nearly all of them, and the worker's hot path — is claimed
    by the claim's statement alone, in autocommit; one with a webhook by the same statement in a
    transaction that records its delivery.
    """
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.GENERATION_LEASE_SECONDS)
    generation = _claimed(generation_id=generation_id, now=now, lease_until=lease_until, webhook=False)
    if generation is None:
        with transaction.atomic():
            generation = _claimed(generation_id=generation_id, now=now, lease_until=lease_until, webhook=True)
            if generation is not None:
                webhook_delivery_create(generation=generation, event=WebhookEvent.STARTED)
    if generation is not None:
        if announce:
            completion.publish_started(generation_id)
        return generation
    claimable = Q(status=GenerationStatus.QUEUED) | Q(status=GenerationStatus.RUNNING, lease_expires_at__lt=now)
    if Generation.objects.filter(claimable, pk=generation_id).exists():  # its attempts are used up
        generation_fail(generation_id=generation_id, code=errors.WORKER_LOST, message=errors.WORKER_LOST_MESSAGE)
    return None


def _claimed(*, generation_id: str, now, lease_until, webhook: bool) -> Generation | None:
    """The claim's one `UPDATE … RETURNING` (instead of an UPDATE and a read in a transaction:
    four round trips, ~1 ms of worker CPU), of a generation with a webhook or without one, with
    its `claimed` event (in the same statement where a CTE may write). The model comes from the
    process's catalog snapshot, read from the table only when it is not there (disabled since
    the generation was made)."""
    ops, table = connection.ops, Generation._meta.db_table
    update = f"""UPDATE {table} SET status = %s, attempts = attempts + 1, started_at = %s, lease_expires_at = %s
        WHERE id = %s AND webhook_url {"<>" if webhook else "="} '' AND attempts < %s
          AND (status = %s OR (status = %s AND lease_expires_at < %s))
        RETURNING {columns_sql(Generation)}"""
    params = [
        GenerationStatus.RUNNING,
        ops.adapt_datetimefield_value(now),
        ops.adapt_datetimefield_value(lease_until),
        generation_id,
        settings.GENERATION_MAX_ATTEMPTS,
        GenerationStatus.QUEUED,
        GenerationStatus.RUNNING,
        ops.adapt_datetimefield_value(now),
    ]
    claimed = Event(GenerationEventKind.CLAIMED, ROW_ATTEMPT, now)
    if ONE_STATEMENT_TRANSITIONS and backends.dml_in_cte():  # its event in the same statement
        event_sql, event_params = events_sql(generation_id, [claimed], condition="FROM claimed")
        sql = f"WITH claimed AS ({update}), claim_event AS ({event_sql}) SELECT {columns_sql(Generation)} FROM claimed"
        generation = next(iter(query_instances(Generation, sql, params + event_params)), None)
    else:
        with transaction.atomic():
            generation = next(iter(query_instances(Generation, update, params)), None)
            if generation is not None:
                events_write(generation_id, [replace(claimed, attempt=generation.attempts)])
    if generation is not None:
        generation.model = model_for_run(generation.model_id)
    return generation


def generation_leases_renew(*, attempts: dict[str, int]) -> set[str]:
    """Extend the leases of running attempts (generation id → attempt) in one UPDATE; the ids
    whose attempt no longer owns its generation (canceled, finished, taken over or deleted),
    which are not renewed. Those are looked up only when the UPDATE renewed fewer than asked."""
    if not attempts:
        return set()
    owned = Q()
    for generation_id, attempt in attempts.items():
        owned |= Q(pk=generation_id, attempts=attempt)
    still_owned = Generation.objects.filter(owned, status=GenerationStatus.RUNNING)
    until = timezone.now() + timedelta(seconds=settings.GENERATION_LEASE_SECONDS)
    if still_owned.update(lease_expires_at=until) == len(attempts):
        return set()
    return set(attempts) - set(still_owned.values_list("pk", flat=True))


def generation_finalize(
    *,
    generation_id: str,
    attempt: int,
    images: list[StoredImage],
    error: tuple[str, str] | None = None,
    call: ProviderCall | None = None,
    rows: Sequence[Row] = (),
) -> Generation:
    """Record the outcome of one attempt — with its provider `call`, when there was one — and
    refund the missing images, exactly once. `rows`: other tables' rows the finish's statement
    writes too, whether or not the attempt was still the generation's (its upstream call's record:
    no statement, nor connection, of its own on the worker's hot path).

    A stale attempt (the sweeper already failed it, or a newer attempt owns it) changes nothing.
    The common finish — every image delivered, no webhook, nothing to refund — is the finish's
    statement alone, in autocommit (the worker's other hot path); any other is the same
    statement in a transaction with the refund and the webhook's delivery.
    """
    events = call.events(attempt) if call is not None else []
    # Never before the call's end as the event says it (its start on the wall clock plus a
    # latency timed on the monotonic one, rounded): the history is read in time order.
    now = max([timezone.now(), *(event.at for event in events)])
    if images:
        events.append(Event(GenerationEventKind.SUCCEEDED, attempt, now, detail={"images": len(images)}))
    else:
        events.append(Event(GenerationEventKind.FAILED, attempt, now, error[0] if error else ""))
    finish = {"generation_id": generation_id, "attempt": attempt, "images": images, "events": events, "now": now}
    finish["rows"] = rows
    finish["usage"] = call.usage if call is not None else None  # the provider's tokens, stored with the finish
    if images and not error:
        generation = _finished(**finish, plain=True)
        if generation is not None:
            _on_finished(generation)  # autocommit: its after-commit steps run now
            logger.info("generation %s succeeded: %s/%s images", generation_id, len(images), generation.n)
            return generation
    with transaction.atomic():
        generation = _finished(**finish, plain=False)
        if generation is None:
            logger.warning("generation %s: stale attempt %s ignored", generation_id, attempt)
            return Generation.objects.get(pk=generation_id)
        missing = generation.n - len(images)
        if error and not images:
            generation.error_code, generation.error_message = error[0], error[1][:1000]
        elif missing:
            generation.error_code = errors.PARTIAL_RESULT
            generation.error_message = (
                f"The provider returned {len(images)} of {generation.n} images; the rest was refunded."
            )
        _refund(generation, missing * generation.price_per_image)
        generation.save(update_fields=["error_code", "error_message", "credits_refunded"])
        _on_finished(generation)
    logger.info("generation %s %s: %s/%s images", generation_id, generation.status, len(images), generation.n)
    return generation


def _finished(
    *,
    generation_id: str,
    attempt: int,
    images: list[StoredImage],
    events: list[Event],
    now,
    usage,
    rows: Sequence[Row],
    plain: bool,
) -> Generation | None:
    """The finish's statement: the row of this attempt (running, `attempts` its fence) moves to
    succeeded — failed without images — with its provider's `usage`, and its images and `events`
    are stored; the row as it
    is then, or None when it was not this attempt's to finish. `plain` adds the hot path's
    conditions: all n images delivered and no webhook (nothing else to write with it); its `rows`
    are written only when it finished the generation (else the statement that does writes them).

    One statement where a statement can write in its common table expressions (the UPDATE and
    the rows commit together in autocommit: five round trips and the ORM's save() became one);
    elsewhere the same statements one after the other in a transaction."""
    ops, table, image_table = connection.ops, Generation._meta.db_table, GeneratedImage._meta.db_table
    status = GenerationStatus.SUCCEEDED if images else GenerationStatus.FAILED
    update = f"""UPDATE {table} SET status = %s, finished_at = %s, provider_usage = %s
        WHERE id = %s AND status = %s AND attempts = %s{" AND n = %s AND webhook_url = ''" if plain else ""}
        RETURNING {columns_sql(Generation)}"""
    usage = Generation._meta.get_field("provider_usage").get_db_prep_save(usage, connection)
    params = [status, ops.adapt_datetimefield_value(now), usage, generation_id, GenerationStatus.RUNNING, attempt]
    params += [len(images)] if plain else []
    new_image_id = GeneratedImage._meta.get_field("id").get_default
    columns = 'id, generation_id, "index", storage_key, content_type, width, height, byte_size, created_at'
    if ONE_STATEMENT_TRANSITIONS and backends.dml_in_cte():
        ctes = [f"finished AS ({update})"]
        if images:
            values = ", ".join(["(%s, %s::smallint, %s, %s, %s::integer, %s::integer, %s::integer)"] * len(images))
            ctes.append(f"""stored AS (
                INSERT INTO {image_table} ({columns})
                SELECT v.id, finished.id, v.index, v.storage_key, v.content_type, v.width, v.height, v.byte_size, %s
                FROM finished, (VALUES {values}) AS v (id, index, storage_key, content_type, width, height, byte_size)
            )""")
            params.append(now)
            for image in images:
                params += [new_image_id(), image.index, image.storage_key, image.content_type]
                params += [image.width, image.height, image.byte_size]
        event_sql, event_params = events_sql(generation_id, events, condition="FROM finished")
        ctes.append(f"finish_events AS ({event_sql})")
        params += event_params
        for index, row in enumerate(rows):
            row_sql, row_params = row("FROM finished" if plain else "WHERE TRUE")
            ctes.append(f"row_{index} AS ({row_sql})")
            params += row_params
        sql = f"WITH {', '.join(ctes)} SELECT {columns_sql(Generation)} FROM finished"
        return next(iter(query_instances(Generation, sql, params)), None)
    with transaction.atomic():
        generation = next(iter(query_instances(Generation, update, params)), None)
        if generation is not None:
            if images:
                image_rows = []
                for image in images:
                    image_rows += [new_image_id(), generation_id, image.index, image.storage_key, image.content_type]
                    image_rows += [image.width, image.height, image.byte_size, ops.adapt_datetimefield_value(now)]
                values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(images))
                with connection.cursor() as cursor:
                    cursor.execute(f"INSERT INTO {image_table} ({columns}) VALUES {values}", image_rows)
            events_write(generation_id, events)
        if generation is not None or not plain:
            with connection.cursor() as cursor:
                for row in rows:
                    cursor.execute(*row("WHERE TRUE"))
        return generation


def generation_fail(*, generation_id: str, code: str, message: str) -> bool:
    """Fail an unfinished generation and refund it in full; False if it had already finished."""
    _, ended = _end_refunded(
        Generation.objects, generation_id=generation_id, status=GenerationStatus.FAILED, code=code, message=message
    )
    if ended:
        logger.warning("generation %s failed: %s", generation_id, code)
    return ended


def _end_refunded(rows, *, generation_id: str, status: str, code: str, message: str) -> tuple[Generation, bool]:
    """End an unfinished generation (one of `rows`) with `status` and refund it in full.

    (generation, True) when this call ended it; (generation, False) when it had already
    finished. Raises Generation.DoesNotExist when it is not among `rows`.
    """
    with transaction.atomic():
        generation = rows.select_for_update().get(pk=generation_id)
        if generation.status in FINISHED:
            return generation, False
        if generation.status == GenerationStatus.QUEUED:  # no task may take its turn now
            turn = {"generation_id": generation.id, "model_id": generation.model_id, "n": generation.n}
            transaction.on_commit(lambda: fair.fair_remove(**turn))
        generation.status = status
        generation.error_code, generation.error_message = code, message[:1000]
        generation.finished_at = timezone.now()
        events_write(generation.id, [Event(status, generation.attempts, generation.finished_at, code)])
        _refund(generation, generation.credits_requested)
        generation.save(update_fields=["status", "error_code", "error_message", "credits_refunded", "finished_at"])
        _on_finished(generation)
    return generation, True


def _on_finished(generation: Generation) -> None:
    """The one step when a generation reaches a final state (succeeded, failed, canceled), called
    inside the transaction that finished it: after the commit, free its key's concurrency slot,
    wake its sync waiter and count it; and record its `completed` webhook in that same
    transaction (sent after the commit), so a crash cannot keep the finish and lose the webhook.
    Everything else that follows a finish hangs off here, so no finishing path can forget it."""
    generation_id, api_key_id = generation.id, generation.api_key_id
    model, status, refunded = generation.model_id, generation.status, generation.credits_refunded
    seconds = (generation.finished_at - generation.created_at).total_seconds()

    def finished() -> None:
        slot_release_and_announce(api_key_id=api_key_id, generation_id=generation_id)
        metrics.GENERATIONS_FINISHED.labels(model, status).inc()
        metrics.GENERATION_LATENCY.labels(model, status).observe(seconds)
        if refunded:
            metrics.CREDITS.labels("refunded").inc(refunded)

    transaction.on_commit(finished)
    webhook_delivery_create(generation=generation, event=WebhookEvent.COMPLETED)


def _refund(generation: Generation, amount: int) -> None:
    """Give `amount` back (the ledger, the key's usage) and record it; inside the transaction
    that ends the generation."""
    if amount <= 0:
        return
    images = amount // generation.price_per_image
    credits_refund(
        account=account_get_or_create(user=generation.owner),
        generation_id=generation.id,
        amount=amount,
        memo=f"refund: {images} of {generation.n} images not delivered",
    )
    if generation.api_key_id is not None:
        api_key_usage_refund(
            api_key_id=generation.api_key_id, day=utc_day(generation.created_at), images=images, credits=amount
        )
    generation.credits_refunded = amount
    refunded = Event(GenerationEventKind.REFUNDED, generation.attempts, timezone.now(), detail={"credits": amount})
    events_write(generation.id, [refunded])


def generation_cancel(*, owner, generation_id: str) -> Generation:
    """Stop an unfinished generation of `owner` and refund it in full (nothing was delivered).

    Idempotent: a finished (or already canceled) generation is returned as it is. An attempt
    still running finds the status changed and its finalize is ignored (the attempt fence).
    """
    try:
        generation, ended = _end_refunded(
            Generation.objects.filter(owner=owner),
            generation_id=generation_id,
            status=GenerationStatus.CANCELED,
            code=errors.CANCELED,
            message="The generation was canceled; credits were refunded.",
        )
    except Generation.DoesNotExist:
        raise NotFound("Generation not found") from None
    if ended:
        logger.info("generation %s canceled", generation_id)
    return generation
