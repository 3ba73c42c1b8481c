"""A generation request, from its checks to its answer: precheck → references → create and
charge → (wait) → outcome (generation_submit). The view parses the request and shapes the answer;
everything between is here."""

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apikeys.services import api_key_usage_charge_sql
from billing.alerts import balance_watch_after_charge
from billing.lock_objects import account_lock_then
from billing.models import CreditAccount
from billing.selectors import (
    CreditsSummary,
    account_type_turn_weight,
    credits_summary_for_user,
    credits_summary_of,
)
from billing.services import CHARGED, account_get_or_create, credits_charge, credits_charge_ctes
from generations import fair
from generations.limits import (
    limits_check_charged,
    limits_checked_after_charge,
    limits_effective,
    limits_model_check,
    limits_take,
)
from generations.models import (
    FINISHED,
    Generation,
    GenerationEventKind,
    GenerationStatus,
    IdempotencyKey,
    ReferenceImage,
    WebhookEvent,
)
from generations.references import reference_images_read
from generations.services.enqueue import generation_enqueue
from generations.services.events import Event, events_sql
from generations.services.idempotency import (
    KeyTaken,
    idempotency_claim_release,
    idempotency_claim_settle,
    idempotency_key_decide,
    request_hash_of,
)
from generations.services.precheck import generation_precheck, request_priced
from generations.services.wait import generation_wait
from hub.compiled import insert_when, inserted
from hub.http.departure import UNWATCHED, Departure
from hub.http.errors import GenerationCanceled, GenerationFailed
from hub.infra import backends, metrics, storage
from hub.infra.ids import opaque_id
from hub.infra.timefmt import utc_day

# A generation's row, its common charge and its key's usage are one statement (_charged) where the
# database writes in common table expressions (hub.infra.backends); elsewhere, for a charge the
# statement leaves to the row-by-row path, and with this off (tests compare the two), one
# transaction runs the same writes one after the other.
ONE_STATEMENT_CREATE = True


@dataclass(frozen=True)
class SubmitOutcome:
    """How a generation request is answered: 202 while its generation is unfinished (an async
    request, a `Prefer: wait` or HUB_SYNC_WAIT_SECONDS that ran out, a wait that failed: the body
    carries its poll_url),
    200 once it succeeded, with the owner's balance after it. A failed or canceled one is an
    error (GenerationFailed, GenerationCanceled), raised instead."""

    generation: Generation
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    balance: CreditsSummary | None = None
    # A monotonic time before the generation was enqueued, when this request created it (not a
    # replay's): a wait or watch from here may skip its first read (generations.completion).
    enqueued_after: float | None = None


def generation_submit(
    *,
    owner,
    api_key,
    params: dict,
    files: list,
    idempotency_key: str | None,
    max_wait: float | None,
    webhook_base_url: str,
    mask=None,
    departure: Departure = UNWATCHED,
) -> SubmitOutcome:
    """One generation request. `params` are generation_create's (the request's contract:
    generations.schema), `files` the reference uploads and `mask` the mask's (or None), read
    only after the cheap refusals; `max_wait` the client's `Prefer: wait=N` (sync requests),
    named back in Preference-Applied; `departure` ends a sync wait whose client hung up (the
    generation goes on)."""
    started = time.monotonic()  # before the generation is enqueued: generation_wait
    created_since = timezone.now()
    priced = {name: params[name] for name in ("model_id", "size", "quality", "n", "options")}
    account = generation_precheck(
        owner=owner, api_key=api_key, reference_count=len(files), idempotency_key=idempotency_key, **priced
    )
    references, mask_png = reference_images_read(files, mask=mask)
    generation = generation_create(
        owner=owner,
        api_key=api_key,
        idempotency_key=idempotency_key,
        references=references,
        mask=mask_png,
        webhook_base_url=webhook_base_url,
        account=account,
        **params,
    )
    # A replay (Idempotency-Key) answers an older generation, which may have finished before
    # this process listened: its wait reads the row first.
    enqueued_after = started if generation.created_at >= created_since else None
    if params["is_async"]:
        return SubmitOutcome(generation, 202, enqueued_after=enqueued_after)
    wait = _sync_wait(max_wait)
    generation = generation_wait(
        generation=generation, max_wait=wait, enqueued_after=enqueued_after, departure=departure
    )
    headers = {"Preference-Applied": f"wait={_seconds_text(wait)}"} if max_wait is not None else {}
    if generation.status not in FINISHED:  # a capped wait ran out, or the wait itself failed
        return SubmitOutcome(generation, 202, headers)
    if generation.status == GenerationStatus.FAILED:
        raise GenerationFailed(generation.error_message or None, generation_id=generation.id)
    if generation.status == GenerationStatus.CANCELED:
        raise GenerationCanceled(generation_id=generation.id)
    # Read with the finished row by the wait; a row it re-read after a timeout has none.
    balance = credits_summary_of(generation) or credits_summary_for_user(user_id=generation.owner_id)
    return SubmitOutcome(generation, 200, headers, balance)


def _sync_wait(preferred: float | None) -> float | None:
    """How long the request waits before its 202: the client's `Prefer: wait`, within the hub's
    HUB_SYNC_WAIT_SECONDS; None (until the generation's deadline) when neither is shorter."""
    if settings.SYNC_WAIT_SECONDS >= settings.GENERATION_TIMEOUT_SECONDS:
        return preferred
    return settings.SYNC_WAIT_SECONDS if preferred is None else min(preferred, settings.SYNC_WAIT_SECONDS)


def _seconds_text(seconds: float) -> str:
    """`5`, `0.5`: never `1e+30` (the view caps and rounds the wait it reads)."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


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
    options: dict | None = None,
    mask: IO[bytes] | None = None,
    partial_images: int | None = None,
) -> Generation:
    """Validate against the catalog, charge n × price and persist — all or nothing.

    `account` is the owner's credit account when the caller has just read it (the precheck):
    only its id and type are used here (the charge locks and re-reads the row), so the request
    reads it once.

    With an `idempotency_key`, a repeat of the same request by the same account returns the
    generation the first one made (charged once, finished or not); the same key with another
    request raises IdempotencyConflict. Who answers is decided before any limit is taken
    (idempotency_key_decide): a repeat that arrives while the first is still creating waits for
    it and answers like it — it never takes a limit, so it is never refused one.

    With a `webhook_url`, the `webhook_events` (default: completed) are POSTed there, signed
    (generations.webhooks); `webhook_base_url` is the hub origin the request reached, for the
    payload's image URLs.

    `options` are OpenAI's image options asked (generations.options, "mask": true with a `mask`,
    the re-encoded PNG), each one the model must offer. `partial_images`: a streamed request's, 0–3
    (the worker relays them to its stream, not stored; not part of an Idempotency-Key's request).
    """
    options = options or {}
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
        "options": options,
        "mask": mask,
        "partial_images": partial_images,
    }
    if idempotency_key is None:
        return _create(**request, claim=None)
    # The webhook joins the hash only when there is one: keys stored before webhooks existed
    # keep their hashes.
    webhook = [webhook_url, sorted(webhook_events)] if webhook_url else []
    # So do the options, and the mask (among the files hashed), when asked.
    asked = [options] if options else []
    files = [*references, mask] if mask is not None else references
    request_hash = request_hash_of(model_id, prompt, size, quality, n, is_async, *webhook, *asked, files)
    while True:
        replay, claim = idempotency_key_decide(owner=owner, key=idempotency_key, request_hash=request_hash)
        if replay is not None:
            return replay
        try:
            return _create(**request, claim=claim)
        except KeyTaken:
            continue  # our claim was taken over as abandoned: the request that took it decides
        except BaseException:
            idempotency_claim_release(claim)  # refused or failed: the key is free for a retry
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
    options: dict,
    mask: IO[bytes] | None,
    partial_images: int | None,
    claim: IdempotencyKey | None,
) -> Generation:
    """generation_create's work once it is this request's to do (`claim`: its Idempotency-Key's,
    settled in the charging transaction)."""
    model, shape, price = request_priced(model_id, size, quality, len(references), options)
    account = account or account_get_or_create(user=owner)
    limits = limits_effective(api_key=api_key, account_type=account.account_type)
    limits_model_check(limits=limits, model_id=model.id)
    generation_id = opaque_id("gen")
    structlog.contextvars.bind_contextvars(generation_id=generation_id)
    hold = limits_take(api_key=api_key, limits=limits, generation_id=generation_id, n=n)

    reference_keys, mask_keys = [], []
    try:
        reference_keys.extend(
            storage.object_save(
                key=storage.reference_key(generation_id=generation_id, index=i),
                data=data,
                content_type="image/png",
            )
            for i, data in enumerate(references)
        )
        if mask is not None:  # read by the worker when options say "mask"
            mask_keys.append(
                storage.object_save(
                    key=storage.mask_key(generation_id=generation_id), data=mask, content_type="image/png"
                )
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
            options=options,
            partial_images=partial_images,
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
        checked_after = api_key is not None and limits_checked_after_charge(limits=limits)
        # The common request's writes are one statement that commits by itself; the rest with it.
        with transaction.atomic() if claim is not None or reference_keys or checked_after else nullcontext():
            if claim is not None:
                idempotency_claim_settle(claim=claim, generation=generation)
            # Before the generation's row (the statement below): its foreign keys are checked at
            # the commit, and the account stays locked for as short a time as can be.
            if reference_keys:
                ReferenceImage.objects.bulk_create(
                    ReferenceImage(generation=generation, index=i, storage_key=key)
                    for i, key in enumerate(reference_keys)
                )
            _charged(generation, account=account, memo=f"{n} × {model.id}")
            if checked_after:
                limits_check_charged(generation=generation, limits=limits)
            turn = fair.Turn(
                generation_id,
                model.id,
                owner.pk,
                account_type_turn_weight(account_type=account.account_type),
                n,
                sync=not is_async,
            )
            transaction.on_commit(lambda: _on_created(generation, turn, n * price, account))
    except Exception:
        hold.give_back()
        for key in [*reference_keys, *mask_keys]:
            storage.object_delete(key)
        raise
    # Said by the request's access line (hub.http.observability), which carries the context: a line of
    # its own cost an async submit ~4 % of the web's CPU (bench async-c32, yappi).
    structlog.contextvars.bind_contextvars(credits_charged=n * price)
    return generation


def _charged(generation: Generation, *, account: CreditAccount, memo: str) -> None:
    """Write the generation's row and its `queued` event, charge its credits (billing.services)
    and count its key's usage: all or none (InsufficientCredits: nothing written).

    On PostgreSQL, one statement after the account lock in the same round trip
    (credits_charge_ctes, account_lock_then): the account row stays locked until the commit and
    every charge of the account queues behind it; row by row the transaction was six round trips
    with the driver's and Django's work around each, now one (BEGIN, the lock, the statement and
    COMMIT pipelined). The statement charges only what the row-by-row charge would charge the
    same way; what it leaves (a grant due to expire, a short balance), and every charge on a
    database without that statement, takes credits_charge's row-by-row path, followed by the same
    writes as statements of their own."""
    amount = generation.credits_requested

    queued = Event(GenerationEventKind.QUEUED, 0, generation.enqueued_at, detail={"credits": amount})

    def writes(condition: str) -> list[tuple[str, str, list]]:
        """The generation's own writes (name, SQL, parameters), made when `condition` (a FROM and a
        WHERE) yields a row: its row, its first event, its key's usage."""
        made = [("charge_generation", *insert_when(generation, condition))]
        made.append(("charge_event", *events_sql(generation.id, [queued], condition=condition)))
        if generation.api_key_id is not None:
            usage = {"images": generation.n, "credits": amount, "day": utc_day(generation.created_at)}
            usage_sql = api_key_usage_charge_sql(api_key_id=generation.api_key_id, condition=condition, **usage)
            made.append(("charge_usage", *usage_sql))
        return made

    if ONE_STATEMENT_CREATE and backends.dml_in_cte():
        sql, params = credits_charge_ctes(
            account_id=account.pk, amount=amount, generation_id=generation.id, memo=memo, now=generation.enqueued_at
        )
        for name, write, write_params in writes(CHARGED):
            sql += f", {name} AS ({write})"
            params += write_params
        if account_lock_then(account.pk, f"WITH {sql} SELECT 1 {CHARGED}", params) is not None:
            inserted(generation)
            return
    with transaction.atomic(), connection.cursor() as cursor:
        credits_charge(account=account, amount=amount, generation_id=generation.id, memo=memo, savepoint=False)
        for _, write, write_params in writes("WHERE TRUE"):
            cursor.execute(write, write_params)
    inserted(generation)


def _on_created(generation: Generation, turn: fair.Turn, credits: int, account: CreditAccount) -> None:
    """After the charge commits: count it, hand the generation to the broker with its fair
    turn (its place in the order, found by the hand-over, goes on the instance for the answer),
    and tell billing what was charged, should it have crossed a threshold of the account
    (`account` as read before the charge: billing.alerts.balance_watch_after_charge, no query)."""
    metrics.CREDITS.labels("charged").inc(credits)
    enqueued = generation_enqueue(generation_id=turn.generation_id, stamp=False, turn=turn)
    generation.queue_position_at_submit = enqueued and enqueued.queue_position
    balance_watch_after_charge(account=account, charged=credits)
