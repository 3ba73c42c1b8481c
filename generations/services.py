"""Writes of the generation life cycle: create + charge, enqueue, claim, finalize, fail, wait.

State changes are conditional updates on the generation row (queued → running →
succeeded | failed), so a redelivered or duplicated task cannot finish a generation twice.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import IO

import structlog
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, OuterRef, Q
from django.utils import timezone

from apikeys.services import api_key_usage_charge, api_key_usage_charge_sql, api_key_usage_refund
from billing.alerts import balance_watch_after_charge
from billing.lock_objects import account_lock_then
from billing.models import CreditAccount
from billing.selectors import credits_summary_annotations
from billing.services import (
    CHARGED,
    account_as_read,
    account_get_or_create,
    credits_charge,
    credits_charge_ctes,
    credits_refund,
)
from generations import errors
from generations.catalog import model_for_run, model_get_enabled, price_per_image, reference_count_check, size_shape
from generations.limits import (
    limits_check_charged,
    limits_checked_after_charge,
    limits_effective,
    limits_model_check,
    limits_take,
    slot_release_and_announce,
)
from generations.models import (
    FINISHED,
    GeneratedImage,
    Generation,
    GenerationStatus,
    IdempotencyKey,
    ReferenceImage,
    WebhookEvent,
)
from generations.selectors import with_images
from generations.webhooks import webhook_delivery_create
from hub import completion, metrics, shutdown, storage
from hub.broker import task_send
from hub.compiled import STR_MARKER, CompiledQuery, columns_sql, insert, insert_when, inserted, query_instances
from hub.errors import IdempotencyConflict, InsufficientCredits, InvalidRequest, NotFound
from hub.ids import opaque_id
from hub.observability import current_request_id
from hub.timefmt import utc_day

logger = logging.getLogger(__name__)

# Databases where a generation's row and its common charge are one statement (_create_charged_pg);
# elsewhere, and for the rest, one transaction writes the same rows.
ONE_STATEMENT_CREATE = {"postgresql"}

# Databases whose common finish is one statement (_finish_delivered_pg); elsewhere the ORM
# writes the same rows.
ONE_STATEMENT_FINISH = {"postgresql"}

RUN_TASK_NAME = "generations.run"  # the Celery task that runs one attempt (workers.tasks)

IDEMPOTENCY_KEY_TTL = timedelta(hours=24)
# A first request's claim on its Idempotency-Key lasts while it creates its generation (limits,
# references stored, the charge): milliseconds, seconds with large references. One older than
# this was left by a process that died; repeats waiting on a claim look again at growing
# intervals, from the first to the max.
IDEMPOTENCY_CLAIM_TIMEOUT = timedelta(seconds=60)
IDEMPOTENCY_WAIT_FIRST_SECONDS = 0.01
IDEMPOTENCY_WAIT_MAX_SECONDS = 0.2

# How long past its deadline a sync request still waits for the worker's own verdict.
WAIT_GRACE = timedelta(seconds=10)


@dataclass(frozen=True)
class StoredImage:
    index: int
    storage_key: str
    content_type: str
    width: int
    height: int
    byte_size: int


def generation_create(
    *,
    owner,
    api_key,
    model_id: str,
    prompt: str,
    size: str,
    quality: str,
    n: int,
    is_async: bool,
    references: list[IO[bytes]],
    idempotency_key: str | None = None,
    webhook_url: str = "",
    webhook_events: list[str] | None = None,
    webhook_base_url: str = "",
    account: CreditAccount | None = None,
) -> Generation:
    """Validate against the catalog, charge n × price and persist — all or nothing.

    `account` is the owner's credit account when the caller has just read it (the precheck):
    only its id and type are used here (the charge locks and re-reads the row), so the request
    reads it once.

    With an `idempotency_key`, a repeat of the same request by the same account returns the
    generation the first one made (charged once, finished or not); the same key with another
    request raises IdempotencyConflict. Who answers is decided before any limit is taken
    (_idempotency_key_decide): a repeat that arrives while the first is still creating waits for
    it and answers like it — it never takes a limit, so it is never refused one.

    With a `webhook_url`, the `webhook_events` (default: completed) are POSTed there, signed
    (generations.webhooks); `webhook_base_url` is the hub origin the request reached, for the
    payload's image URLs.
    """
    webhook_events = (webhook_events or [WebhookEvent.COMPLETED]) if webhook_url else []
    request = {
        "owner": owner,
        "api_key": api_key,
        "model_id": model_id,
        "prompt": prompt,
        "size": size,
        "quality": quality,
        "n": n,
        "is_async": is_async,
        "references": references,
        "webhook_url": webhook_url,
        "webhook_events": webhook_events,
        "webhook_base_url": webhook_base_url,
        "account": account,
    }
    if idempotency_key is None:
        return _create(**request, claim=None)
    # The webhook joins the hash only when there is one: keys stored before webhooks existed
    # keep their hashes.
    webhook = [webhook_url, sorted(webhook_events)] if webhook_url else []
    request_hash = _request_hash(model_id, prompt, size, quality, n, is_async, *webhook, references)
    while True:
        replay, claim = _idempotency_key_decide(owner=owner, key=idempotency_key, request_hash=request_hash)
        if replay is not None:
            return replay
        try:
            return _create(**request, claim=claim)
        except _KeyTaken:
            continue  # our claim was taken over as abandoned: the request that took it decides
        except BaseException:
            _idempotency_claim_release(claim)  # refused or failed: the key is free for a retry
            raise


def _create(
    *,
    owner,
    api_key,
    model_id: str,
    prompt: str,
    size: str,
    quality: str,
    n: int,
    is_async: bool,
    references: list[IO[bytes]],
    webhook_url: str,
    webhook_events: list[str],
    webhook_base_url: str,
    account: CreditAccount | None,
    claim: IdempotencyKey | None,
) -> Generation:
    """generation_create's work once it is this request's to do (`claim`: its Idempotency-Key's,
    settled in the charging transaction)."""
    model, shape, price = _priced(model_id, size, quality, len(references))
    account = account or account_get_or_create(user=owner)
    limits = limits_effective(api_key=api_key, account_type=account.account_type)
    limits_model_check(limits=limits, model_id=model.id)
    generation_id = opaque_id("gen")
    structlog.contextvars.bind_contextvars(generation_id=generation_id)
    hold = limits_take(api_key=api_key, limits=limits, generation_id=generation_id, n=n)

    reference_keys = []
    try:
        reference_keys.extend(
            storage.object_save(
                key=storage.reference_key(generation_id=generation_id, index=i),
                data=data,
                content_type="image/png",
            )
            for i, data in enumerate(references)
        )
        now = timezone.now()
        generation = Generation(
            id=generation_id,
            owner=owner,
            api_key=api_key,
            model=model,
            prompt=prompt,
            size=size,
            quality=quality,
            n=n,
            aspect_ratio=shape.aspect_ratio,
            tier=shape.tier,
            is_async=is_async,
            reference_count=len(references),
            price_per_image=price,
            credits_requested=n * price,
            deadline_at=now + timedelta(seconds=settings.GENERATION_TIMEOUT_SECONDS),
            # Sent right after the commit; if that fails, generation_enqueue clears it. A crash in
            # between leaves it set: the sweeper's stale re-send covers that too.
            enqueued_at=now,
            webhook_url=webhook_url,
            webhook_events=webhook_events,
            webhook_base_url=webhook_base_url if webhook_url else "",
        )
        one_statement = (
            connection.vendor in ONE_STATEMENT_CREATE
            and claim is None
            and not reference_keys
            and not limits_checked_after_charge(limits=limits)
        )
        if one_statement and _create_charged_pg(generation, account=account, memo=f"{n} × {model.id}"):
            transaction.on_commit(lambda: _on_created(generation_id, n * price, account))
        else:
            with transaction.atomic():
                insert(generation)
                if claim is not None:
                    _idempotency_claim_settle(claim=claim, generation=generation)
                if reference_keys:
                    ReferenceImage.objects.bulk_create(
                        ReferenceImage(generation=generation, index=i, storage_key=key)
                        for i, key in enumerate(reference_keys)
                    )
                credits_charge(
                    account=account,
                    amount=n * price,
                    generation_id=generation_id,
                    memo=f"{n} × {model.id}",
                    savepoint=False,
                )
                if api_key is not None:
                    api_key_usage_charge(
                        api_key_id=api_key.pk, day=utc_day(generation.created_at), images=n, credits=n * price
                    )
                    limits_check_charged(generation=generation, limits=limits)
                transaction.on_commit(lambda: _on_created(generation_id, n * price, account))
    except Exception:
        hold.give_back()
        for key in reference_keys:
            storage.object_delete(key)
        raise
    # Said by the request's access line (hub.observability), which carries the context: a line of
    # its own cost an async submit ~4 % of the web's CPU (bench async-c32, yappi).
    structlog.contextvars.bind_contextvars(credits_charged=n * price)
    return generation


def _create_charged_pg(generation: Generation, *, account: CreditAccount, memo: str) -> bool:
    """The generation's row, its charge (billing.services.credits_charge_ctes) and its key's usage
    in one statement, after the account lock in the same round trip (account_lock_then): all
    three or none. False when the charge was left to the row-by-row path (nothing written;
    generation_create takes that path). Why: the account row stays locked until the commit and
    every charge of the account queues behind it; row by row the transaction was six round trips
    with the driver's and Django's work around each, now one (BEGIN, the lock, the statement and
    COMMIT pipelined)."""
    amount = generation.credits_requested
    ctes, params = credits_charge_ctes(
        account_id=account.pk, amount=amount, generation_id=generation.id, memo=memo, now=generation.enqueued_at
    )
    row_sql, row_params = insert_when(generation, CHARGED)
    sql = f"WITH {ctes}, charge_generation AS ({row_sql})"
    params += row_params
    if generation.api_key_id is not None:
        usage_sql, usage_params = api_key_usage_charge_sql(
            api_key_id=generation.api_key_id,
            day=utc_day(generation.created_at),
            images=generation.n,
            credits=amount,
            condition=CHARGED,
        )
        sql += f", charge_usage AS ({usage_sql})"
        params += usage_params
    charged = account_lock_then(account.pk, f"{sql} SELECT 1 {CHARGED}", params) is not None
    if charged:
        inserted(generation)
    return charged


def _on_created(generation_id: str, credits: int, account: CreditAccount) -> None:
    """After the charge commits: count it, hand the generation to the broker, and tell billing
    what was charged, should it have crossed a threshold of the account (`account` as read
    before the charge: billing.alerts.balance_watch_after_charge, no query)."""
    metrics.CREDITS.labels("charged").inc(credits)
    generation_enqueue(generation_id=generation_id, stamp=False)
    balance_watch_after_charge(account=account, charged=credits)


def _priced(model_id: str, size: str, quality: str, reference_count: int):
    """(model, size shape, price per image) for a request the catalog accepts."""
    model = model_get_enabled(model_id)
    if size not in model.sizes:
        raise InvalidRequest(
            f"Unsupported size '{size}' for {model.id}; supported: {', '.join(model.sizes)}", param="size"
        )
    if quality not in model.qualities:
        raise InvalidRequest(
            f"Unsupported quality '{quality}'; supported: {', '.join(model.qualities)}", param="quality"
        )
    reference_count_check(model, reference_count)
    shape = size_shape(size)
    return model, shape, price_per_image(model, quality=quality, tier=shape.tier)


def generation_precheck(
    *,
    owner,
    api_key,
    model_id: str,
    size: str,
    quality: str,
    n: int,
    reference_count: int,
    idempotency_key: str | None,
) -> CreditAccount:
    """The cheap refusals, before any upload is decoded: the catalog's rules, a model the key
    may not use, and a balance that cannot cover n × price (a read without a lock; the charge
    itself decides). A request under a known Idempotency-Key is left to generation_create
    before anything is checked: a replay answers like the first whatever changed since (the
    balance spent, the model disabled or taken off the key). The rate and concurrency limits
    are taken by generation_create only: taking them here too would count one request twice.
    Returns the account it read, for generation_create."""
    account = account_as_read(user=owner)  # read with the API key: its balance, without a lock
    if idempotency_key is not None and IdempotencyKey.objects.filter(owner=owner, key=idempotency_key).exists():
        return account
    model, _, price = _priced(model_id, size, quality, reference_count)
    limits_model_check(limits=limits_effective(api_key=api_key, account_type=account.account_type), model_id=model.id)
    balance = account.balance
    if balance < n * price:
        raise InsufficientCredits(f"Not enough credits: {n * price} needed, {balance} available")
    return account


class _KeyTaken(Exception):
    """This request's Idempotency-Key claim was taken over as abandoned before its charge committed."""


def _request_hash(*fields) -> str:
    """SHA-256 of the parsed request — references by their own SHA-256."""
    *params, references = fields
    digest = hashlib.sha256(json.dumps(params, ensure_ascii=True).encode())
    for file in references:
        digest.update(hashlib.file_digest(file, "sha256").digest())
        file.seek(0)
    return digest.hexdigest()


def _idempotency_key_decide(*, owner, key: str, request_hash: str) -> tuple[Generation | None, IdempotencyKey | None]:
    """Who answers a request with an Idempotency-Key, before it takes any limit: (the earlier
    request's generation, None) — a replay — or (None, this request's claim): a row without a
    generation, committed at once, so that concurrent repeats see it. A repeat that finds a
    claim waits for that request to settle it and answers with its generation; if it failed
    instead (refused for credits or a limit, a bad reference), its claim is gone and the repeat
    claims the key as a first request. A claim older than IDEMPOTENCY_CLAIM_TIMEOUT was left by
    a process that died while creating: the key is free again."""
    delay = IDEMPOTENCY_WAIT_FIRST_SECONDS
    while True:
        row = IdempotencyKey.objects.select_related("generation").filter(owner=owner, key=key).first()
        if row is None:
            claim = _idempotency_key_claim(owner=owner, key=key, request_hash=request_hash)
            if claim is not None:
                return None, claim
            continue  # another request claimed it just now
        now = timezone.now()
        abandoned = row.generation_id is None and row.created_at < now - IDEMPOTENCY_CLAIM_TIMEOUT
        if abandoned or row.created_at < now - IDEMPOTENCY_KEY_TTL:
            if abandoned:
                logger.warning("Idempotency-Key claimed %s ago and never settled: freed", now - row.created_at)
            # Unless it was settled meanwhile: then the next look replays it.
            IdempotencyKey.objects.filter(pk=row.pk, generation=row.generation_id).delete()
            continue
        if row.request_hash != request_hash:
            raise IdempotencyConflict(
                "This Idempotency-Key was already used with a different request; use a new key for a new request",
                param="Idempotency-Key",
            )
        if row.generation is not None:
            logger.info("generation %s: replayed for Idempotency-Key", row.generation_id)
            return row.generation, None
        connection_release()  # no pooled connection held while waiting (hub.settings, DATABASES)
        time.sleep(delay)  # the first request is still creating: it takes milliseconds
        delay = min(2 * delay, IDEMPOTENCY_WAIT_MAX_SECONDS)


def _idempotency_key_claim(*, owner, key: str, request_hash: str) -> IdempotencyKey | None:
    """This request's claim on the key; None when another request claimed it first."""
    try:
        with transaction.atomic():  # a savepoint: the unique index decides who was first
            return IdempotencyKey.objects.create(owner=owner, key=key, request_hash=request_hash, generation=None)
    except IntegrityError:
        return None


def _idempotency_claim_settle(*, claim: IdempotencyKey, generation: Generation) -> None:
    """In the charging transaction: the claim names its generation (repeats replay it from the
    commit on) — unless a repeat took the claim over as abandoned."""
    if not IdempotencyKey.objects.filter(pk=claim.pk, generation=None).update(generation=generation):
        raise _KeyTaken


def _idempotency_claim_release(claim: IdempotencyKey) -> None:
    """Free the key of a request that created nothing; its waiting repeats then go on as first
    requests. Should this fail, the claim lapses after IDEMPOTENCY_CLAIM_TIMEOUT."""
    try:
        IdempotencyKey.objects.filter(pk=claim.pk, generation=None).delete()
    except DatabaseError as exc:
        logger.warning("could not free an Idempotency-Key claim: %s", exc)


def idempotency_keys_expire() -> int:
    """Forget keys older than IDEMPOTENCY_KEY_TTL, and abandoned claims (the sweeper's job)."""
    now = timezone.now()
    lapsed = Q(created_at__lt=now - IDEMPOTENCY_KEY_TTL) | Q(
        generation=None, created_at__lt=now - IDEMPOTENCY_CLAIM_TIMEOUT
    )
    deleted, _ = IdempotencyKey.objects.filter(lapsed).delete()
    return deleted


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


def generation_enqueue(*, generation_id: str, stamp: bool = True) -> bool:
    """Hand the generation to the broker and stamp `enqueued_at` (the creating transaction
    stamps it already: `stamp=False` saves a query on the hot path). If the broker is down the
    row is marked unsent (`enqueued_at` null) and the sweeper sends it later — or, for a sync
    request that is waiting right now, it is failed and refunded at once."""
    try:
        task_send(
            name=RUN_TASK_NAME,
            task_id=generation_id,
            queue=settings.GENERATIONS_QUEUE,
            # The worker's log lines for this generation carry the request id it was made under.
            headers={"request_id": current_request_id()},
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
        )
    except Exception as exc:  # noqa: BLE001 — kombu raises transport-specific errors; none may lose the row
        logger.error("generation %s: broker unavailable: %s", generation_id, exc)
        Generation.objects.filter(pk=generation_id).update(enqueued_at=None)
        generation = Generation.objects.get(pk=generation_id)
        if not generation.is_async:
            generation_fail(
                generation_id=generation_id,
                code=errors.QUEUE_UNAVAILABLE,
                message="The generation queue is unavailable right now; your credits were refunded. Please retry.",
            )
        return False
    if stamp:  # the last hand-over to the broker: the sweeper re-sends what stays queued long past it
        Generation.objects.filter(pk=generation_id, status=GenerationStatus.QUEUED).update(enqueued_at=timezone.now())
    return True


def generation_claim(*, generation_id: str) -> Generation | None:
    """Take the generation for one attempt; None if it is not ours to run.

    Claimable: queued, or running under a lease that ran out (its worker died). Each claim
    bumps `attempts`, the fencing token later writes are checked against. A generation whose
    workers died `GENERATION_MAX_ATTEMPTS` times is failed and refunded instead (poison message).
    The claim is the `started` webhook event: recorded in the claim's transaction, once.
    """
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.GENERATION_LEASE_SECONDS)
    generation = _claim_without_webhook(generation_id=generation_id, now=now, lease_until=lease_until)
    if generation is not None:
        return generation
    claimable = Q(status=GenerationStatus.QUEUED) | Q(status=GenerationStatus.RUNNING, lease_expires_at__lt=now)
    rows = Generation.objects.filter(claimable, pk=generation_id)
    with transaction.atomic():
        claimed = rows.filter(attempts__lt=settings.GENERATION_MAX_ATTEMPTS).update(
            status=GenerationStatus.RUNNING,
            attempts=F("attempts") + 1,
            started_at=now,
            lease_expires_at=lease_until,
        )
        if claimed:
            generation = Generation.objects.select_related("model").get(pk=generation_id)
            webhook_delivery_create(generation=generation, event=WebhookEvent.STARTED)
            return generation
    if rows.exists():
        generation_fail(generation_id=generation_id, code=errors.WORKER_LOST, message=errors.WORKER_LOST_MESSAGE)
    return None


def _claim_without_webhook(*, generation_id: str, now, lease_until) -> Generation | None:
    """The claim of a generation without a webhook — nearly all of them, and the worker's hot
    path: one `UPDATE … RETURNING` in autocommit, instead of a transaction around an UPDATE and
    a read (four round trips, ~1 ms of worker CPU). None when it did not claim (a webhook to
    record, not claimable, attempts used up): generation_claim's transaction decides those.
    The model comes from the process's catalog snapshot, read from the table only when it is
    not there (disabled since the generation was made)."""
    ops, table = connection.ops, Generation._meta.db_table
    rows = query_instances(
        Generation,
        f"""UPDATE {table} SET status = %s, attempts = attempts + 1, started_at = %s, lease_expires_at = %s
        WHERE id = %s AND webhook_url = '' AND attempts < %s
          AND (status = %s OR (status = %s AND lease_expires_at < %s))
        RETURNING {columns_sql(Generation)}""",
        [
            GenerationStatus.RUNNING,
            ops.adapt_datetimefield_value(now),
            ops.adapt_datetimefield_value(lease_until),
            generation_id,
            settings.GENERATION_MAX_ATTEMPTS,
            GenerationStatus.QUEUED,
            GenerationStatus.RUNNING,
            ops.adapt_datetimefield_value(now),
        ],
    )
    generation = next(iter(rows), None)
    if generation is not None:
        generation.model = model_for_run(generation.model_id)
    return generation


def generation_leases_renew(*, attempts: dict[str, int]) -> int:
    """Extend the leases of running attempts (generation id → attempt) in one UPDATE; the
    number renewed. An attempt that no longer owns its generation is not renewed."""
    if not attempts:
        return 0
    owned = Q()
    for generation_id, attempt in attempts.items():
        owned |= Q(pk=generation_id, attempts=attempt)
    until = timezone.now() + timedelta(seconds=settings.GENERATION_LEASE_SECONDS)
    return Generation.objects.filter(owned, status=GenerationStatus.RUNNING).update(lease_expires_at=until)


def generation_requeue(*, generation_id: str, attempt: int) -> bool:
    """Hand an attempt whose worker died back to the queue (the sweeper's recovery path)."""
    requeued = Generation.objects.filter(
        pk=generation_id, status=GenerationStatus.RUNNING, attempts=attempt, lease_expires_at__lt=timezone.now()
    ).update(status=GenerationStatus.QUEUED, enqueued_at=None)
    if requeued:
        logger.warning("generation %s: worker lost during attempt %s; re-queued", generation_id, attempt)
        generation_enqueue(generation_id=generation_id)
    return bool(requeued)


def generation_finalize(
    *, generation_id: str, attempt: int, images: list[StoredImage], error: tuple[str, str] | None = None
) -> Generation:
    """Record the outcome of one attempt and refund the missing images, exactly once.

    A stale attempt (the sweeper already failed it, or a newer attempt owns it) changes nothing.
    """
    if not error and images and connection.vendor in ONE_STATEMENT_FINISH:
        generation = _finish_delivered_pg(generation_id=generation_id, attempt=attempt, images=images)
        if generation is not None:
            _on_finished(generation)  # autocommit: its after-commit steps run now
            logger.info("generation %s succeeded: %s/%s images", generation_id, len(images), generation.n)
            return generation
    with transaction.atomic():
        generation = Generation.objects.select_for_update().get(pk=generation_id)
        if generation.status != GenerationStatus.RUNNING or generation.attempts != attempt:
            logger.warning("generation %s: stale attempt %s ignored", generation_id, attempt)
            return generation
        GeneratedImage.objects.bulk_create(
            GeneratedImage(
                generation=generation,
                index=image.index,
                storage_key=image.storage_key,
                content_type=image.content_type,
                width=image.width,
                height=image.height,
                byte_size=image.byte_size,
            )
            for image in images
        )
        missing = generation.n - len(images)
        generation.status = GenerationStatus.SUCCEEDED if images else GenerationStatus.FAILED
        if error and generation.status == GenerationStatus.FAILED:
            generation.error_code, generation.error_message = error[0], error[1][:1000]
        elif missing:
            generation.error_code = errors.PARTIAL_RESULT
            generation.error_message = (
                f"The provider returned {len(images)} of {generation.n} images; the rest was refunded."
            )
        _refund(generation, missing * generation.price_per_image)
        generation.finished_at = timezone.now()
        generation.save(update_fields=["status", "error_code", "error_message", "credits_refunded", "finished_at"])
        _on_finished(generation)
    logger.info("generation %s %s: %s/%s images", generation_id, generation.status, len(images), generation.n)
    return generation


def _finish_delivered_pg(*, generation_id: str, attempt: int, images: list[StoredImage]) -> Generation | None:
    """The common finish — every image delivered, no webhook to record, nothing to refund — in
    one statement on PostgreSQL (autocommit: the UPDATE and the image rows commit together):
    the worker's other hot path, five round trips and the ORM's save() become one. The UPDATE's
    conditions are generation_finalize's fence (running, this attempt) plus "all n delivered"
    and "no webhook"; None when they do not hold, and generation_finalize's transaction decides.
    tests/generations/test_finish_paths.py holds its rows to the ORM path's."""
    now = timezone.now()
    new_image_id = GeneratedImage._meta.get_field("id").get_default
    values = ", ".join(["(%s, %s::smallint, %s, %s, %s::integer, %s::integer, %s::integer)"] * len(images))
    table, image_table = Generation._meta.db_table, GeneratedImage._meta.db_table
    sql = f"""
        WITH finished AS (
            UPDATE {table} SET status = %s, finished_at = %s
            WHERE id = %s AND status = %s AND attempts = %s AND n = %s AND webhook_url = ''
            RETURNING {columns_sql(Generation)}
        ),
        stored AS (
            INSERT INTO {image_table}
                (id, generation_id, "index", storage_key, content_type, width, height, byte_size, created_at)
            SELECT v.id, finished.id, v.index, v.storage_key, v.content_type, v.width, v.height, v.byte_size, %s
            FROM finished, (VALUES {values}) AS v (id, index, storage_key, content_type, width, height, byte_size)
        )
        SELECT {columns_sql(Generation)} FROM finished
    """
    params = [GenerationStatus.SUCCEEDED, now, generation_id, GenerationStatus.RUNNING, attempt, len(images), now]
    for image in images:
        params += [new_image_id(), image.index, image.storage_key, image.content_type]
        params += [image.width, image.height, image.byte_size]
    return next(iter(query_instances(Generation, sql, params)), None)


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
        generation.status = status
        generation.error_code, generation.error_message = code, message[:1000]
        generation.finished_at = timezone.now()
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


def generation_wait(
    *, generation: Generation, max_wait: float | None = None, enqueued_after: float | None = None
) -> Generation:
    """Wait until the generation finishes or its deadline passes (then fail and refund it).

    `max_wait` (the client's `Prefer: wait=N`) ends the wait sooner without touching the
    generation: it is returned unfinished, for a 202 with its poll_url. `enqueued_after`, a
    `time.monotonic()` taken before the generation was created, spares the read before the
    first wait when the completion listener was subscribed by then (hub.completion).

    The wait holds no database connection (it is given back before waiting and after each
    read that finds the row unfinished; the answer to a finished one reads on) and, under
    gevent, no thread. It never raises: the credits are already charged, so a
    failure of the wait itself — notifications, database — must not answer 5xx (an SDK would
    retry and pay again). The caller gets the generation as last read, possibly unfinished,
    and answers 202 with its poll_url.
    """
    until = generation.deadline_at + WAIT_GRACE
    remaining = (until - timezone.now()).total_seconds()
    capped = max_wait is not None and max_wait < remaining

    latest = [generation]

    def finished() -> bool:
        try:
            row = _FINISHED_ROW.first(generation.pk)
        except BaseException:
            connection_release()
            raise
        if row is None:
            connection_release()  # before it waits; the answer to a finished row reads on
            return False
        latest[0] = row  # the finished row: no second read to answer with it
        return True

    try:
        connection_release()
        with metrics.SYNC_WAITS.track_inprogress():
            done = completion.wait_done(
                generation.pk,
                timeout=max_wait if capped else remaining,
                is_finished=finished,
                finished_among=_finished_among,
                enqueued_after=enqueued_after,
            )
        if done:
            return latest[0]
        if not capped:
            generation_fail(generation_id=generation.pk, code=errors.TIMEOUT, message=errors.timeout_message())
        generation.refresh_from_db()
    except shutdown.Stopping:
        logger.info("generation %s: this process is stopping; answering with its poll_url", generation.pk)
        return _reread(generation)
    except Exception:  # noqa: BLE001 — see above: charged work is answered, never a 5xx
        logger.exception("generation %s: the wait failed; answering with the row as it is", generation.pk)
        return _reread(generation)
    return generation


def _finished_row(pk):
    # With its owner's credits summary (billing.selectors.credits_summary_of): a succeeded
    # generation's answer carries it, and read here it costs no query of its own.
    # And with its images (generations.selectors.with_images): the answer shows them.
    finished = Generation.objects.filter(pk=pk, status__in=FINISHED)
    return with_images(finished.annotate(**credits_summary_annotations(OuterRef("owner_id"))))[:1]


# The wait's read of its row, compiled once (hub.compiled: it runs at least twice per sync request).
_FINISHED_ROW = CompiledQuery(_finished_row, STR_MARKER)


def _reread(generation: Generation) -> Generation:
    try:
        generation.refresh_from_db()
    except DatabaseError:
        logger.warning("generation %s: could not re-read the row; answering 202", generation.pk)
    return generation


def _finished_among(generation_ids: list[str]) -> list[str]:
    return list(Generation.objects.filter(pk__in=generation_ids, status__in=FINISHED).values_list("pk", flat=True))


def connection_release() -> None:
    """Give this thread's database connection back (to the pool on PostgreSQL) before a long
    wait — unless a caller's transaction is open on it (tests), which must not be cut."""
    if not connection.in_atomic_block:
        connection.close()
