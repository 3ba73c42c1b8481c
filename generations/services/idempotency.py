"""`Idempotency-Key`: who answers a repeated generation request — decided before any limit is
taken (generations.services.submit). A first request claims the key with a row of its own,
settled in its charging transaction; a repeat replays the generation it names."""

import hashlib
import json
import logging
import time
from datetime import timedelta

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from generations.models import Generation, IdempotencyKey
from generations.services.wait import connection_release
from hub.http.errors import IdempotencyConflict

logger = logging.getLogger(__name__)

IDEMPOTENCY_KEY_TTL = timedelta(hours=24)
# A first request's claim on its Idempotency-Key lasts while it creates its generation (limits,
# references stored, the charge): milliseconds, seconds with large references. One older than
# this was left by a process that died; repeats waiting on a claim look again at growing
# intervals, from the first to the max.
IDEMPOTENCY_CLAIM_TIMEOUT = timedelta(seconds=60)
IDEMPOTENCY_WAIT_FIRST_SECONDS = 0.01
IDEMPOTENCY_WAIT_MAX_SECONDS = 0.2


class KeyTaken(Exception):
    """This request's Idempotency-Key claim was taken over as abandoned before its charge committed."""


def request_hash_of(*fields) -> str:
    """SHA-256 of the parsed request — references by their own SHA-256."""
    *params, references = fields
    digest = hashlib.sha256(json.dumps(params, ensure_ascii=True).encode())
    for file in references:
        digest.update(hashlib.file_digest(file, "sha256").digest())
        file.seek(0)
    return digest.hexdigest()


def idempotency_key_decide(*, owner, key: str, request_hash: str) -> tuple[Generation | None, IdempotencyKey | None]:
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


def idempotency_claim_settle(*, claim: IdempotencyKey, generation: Generation) -> None:
    """In the charging transaction: the claim names its generation (repeats replay it from the
    commit on) — unless a repeat took the claim over as abandoned."""
    if not IdempotencyKey.objects.filter(pk=claim.pk, generation=None).update(generation=generation):
        raise KeyTaken


def idempotency_claim_release(claim: IdempotencyKey) -> None:
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
