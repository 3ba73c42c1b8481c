"""Per-key limits at submit time: which models, how many images a minute, how many unfinished
generations at once, how many credits a month. Resolved here, where both the key (apikeys) and
its account type's defaults (billing) are in reach: a key's own value wins, else the default.

Order in generation_create: the model check and `limits_take` (images per minute, a
concurrency slot) come before the charge, so a refused request costs nothing; if the request
then fails before it is charged, `Hold.give_back` returns what it took. The monthly cap (and,
without Redis, the concurrency limit) is checked inside the charging transaction — after
credits_charge locked the account row, which serializes every charge of the account and so of
each of its keys: two concurrent requests cannot both pass.

Concurrency counts unfinished generations — queued as well as running: a key that may only
run 3 at once but queue 1,000 would still fill the workers' queue ahead of other tenants.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from django.conf import settings
from django.utils import timezone

from apikeys import ratelimit
from apikeys.models import ApiKey
from apikeys.selectors import api_key_month_credits
from apikeys.services import api_key_limits_set, api_key_rate_give_back_db, api_key_rate_take_db
from billing.selectors import account_type_limits
from billing.services import account_get_or_create
from generations import completion
from generations.models import Generation, GenerationStatus, ImageModel
from hub.http.errors import InvalidRequest, ModelNotAllowed, MonthlyCreditCapReached, RateLimited
from hub.infra import backends
from hub.infra.redis_client import redis_client
from hub.infra.timefmt import utc_day
from hub.limits import Limits

logger = logging.getLogger(__name__)

# A slot whose generation is not in the database yet may belong to a request still inside its
# charging transaction; the sweeper leaves such slots alone this long.
SLOT_GRACE = timedelta(seconds=60)
CONCURRENCY_RETRY_SECONDS = 1  # a slot frees when any generation of the key finishes: soon


def limits_effective(*, api_key, account_type: str) -> Limits:
    """The limits a request with `api_key` is held to (none for a generation without a key)."""
    if api_key is None:
        return Limits()
    return Limits.of(api_key).over(account_type_limits(account_type=account_type))


def key_limits_set(*, key, within_defaults: bool, **changes) -> ApiKey:
    """Change a key's limits (None clears one) as a person asked: model ids must be in the
    catalog. An owner (`within_defaults`, the account page) may only tighten what the account
    type grants — a limit above the default, or a model outside it, would lift the plan's own
    limit; operators (admin, hub_keylimits) may set anything."""
    models = changes.get("allowed_models")
    if models:
        unknown = sorted(set(models) - set(ImageModel.objects.filter(pk__in=models).values_list("pk", flat=True)))
        if unknown:
            raise InvalidRequest(f"Unknown model(s): {', '.join(unknown)}", param="allowed_models")
    if within_defaults:  # clearing is always fine: the key then falls back to the default
        # What an operator granted the key beyond the plan stays allowed: saving the form unchanged
        # must not fail.
        account_type = account_get_or_create(user=key.owner).account_type
        defaults = account_type_limits(account_type=account_type)
        granted = set(defaults.allowed_models or ()) | set(key.allowed_models or ())
        if models and defaults.allowed_models and not set(models) <= granted:
            raise InvalidRequest(
                f"Your plan allows {', '.join(defaults.allowed_models)}; choose among them", param="allowed_models"
            )
        for name in ("images_per_minute", "concurrency", "monthly_credits"):
            default, value = getattr(defaults, name), changes.get(name)
            if value is None or default is None:
                continue
            most = max(default, getattr(key, name) or 0)
            if value > most:
                raise InvalidRequest(f"Your plan allows at most {most} for {name}", param=name)
    return api_key_limits_set(key=key, **changes)


def limits_model_check(*, limits: Limits, model_id: str) -> None:
    """403 `modelNotAllowed`, not 429: no wait makes the model allowed, so nothing to retry."""
    if limits.allowed_models and model_id not in limits.allowed_models:
        raise ModelNotAllowed(
            f"This API key may not use '{model_id}'; allowed: {', '.join(limits.allowed_models)}", param="model"
        )


@dataclass
class Hold:
    """What a request took from its key's limits before the charge."""

    api_key_id: str | None = None
    cost: int = 0
    rate_token: str | None = None  # Redis: the sliding-window entry
    rate_window: datetime | None = None  # database: the minute it was counted in
    slot: str | None = None  # the generation id holding a concurrency slot

    def give_back(self) -> None:
        """Return what was taken, for a request that was not charged after all."""
        try:
            if self.rate_token is not None:
                ratelimit.window_give_back(name=self.api_key_id, token=self.rate_token, cost=self.cost)
            if self.rate_window is not None:
                api_key_rate_give_back_db(api_key_id=self.api_key_id, window_start=self.rate_window, cost=self.cost)
            if self.slot is not None:
                ratelimit.slot_release(name=self.api_key_id, member=self.slot)
        except (redis.RedisError, OSError) as exc:  # the entries expire by themselves
            logger.warning("key %s: could not give back its limits: %s", self.api_key_id, exc)


def limits_take(*, api_key, limits: Limits, generation_id: str, n: int) -> Hold:
    """Take n images from the key's minute and, with Redis, a concurrency slot for the
    generation; RateLimited (nothing held) when either is spent.

    With Redis down the limits let requests through (logged): they protect capacity, and an
    outage of the shared Redis must not stop paid traffic — the monthly cap, which is about
    money, is decided by the database.
    """
    hold = Hold(api_key_id=api_key.pk if api_key is not None else None, cost=n)
    try:
        if limits.images_per_minute is not None:
            _take_rate(hold, limits.images_per_minute)
        if limits.concurrency is not None and backends.redis():
            decision = ratelimit.slot_take(
                name=api_key.pk, member=generation_id, limit=limits.concurrency, max_age_seconds=_slot_max_age()
            )
            if not decision.allowed:
                raise _concurrency_limited(limits.concurrency)
            hold.slot = generation_id
    except RateLimited:
        hold.give_back()
        raise
    except (redis.RedisError, OSError) as exc:
        logger.warning("key %s: limits not enforced, Redis unavailable: %s", hold.api_key_id, exc)
    return hold


def _take_rate(hold: Hold, limit: int) -> None:
    if backends.redis():
        token = uuid.uuid4().hex
        decision = ratelimit.window_take(name=hold.api_key_id, token=token, cost=hold.cost, limit=limit)
        if decision.allowed:
            hold.rate_token = token
    else:
        decision, window = api_key_rate_take_db(api_key_id=hold.api_key_id, cost=hold.cost, limit=limit)
        if decision.allowed:
            hold.rate_window = window
    if not decision.allowed:
        raise RateLimited(
            f"This API key may generate {limit} images per minute; {hold.cost} requested,"
            f" {max(0, limit - decision.used)} left now",
            limit=limit,
            remaining=limit - decision.used,
            reset=_seconds(decision.reset_ms),
            retry_after=_seconds(decision.retry_after_ms),
        )


def _concurrency_limited(limit: int) -> RateLimited:
    return RateLimited(
        f"This API key may have {limit} unfinished generations at once; wait for one to finish",
        limit=limit,
        remaining=0,
        reset=CONCURRENCY_RETRY_SECONDS,
        retry_after=CONCURRENCY_RETRY_SECONDS,
    )


def _seconds(ms: int) -> int:
    return max(1, -(-ms // 1000))


def _slot_max_age() -> int:
    """The longest a generation stays unfinished: past its deadline, the margin, then the next
    sweep fails it. An older slot is a leak, whatever happened to its release."""
    return (
        settings.GENERATION_TIMEOUT_SECONDS
        + settings.GENERATION_DEADLINE_MARGIN_SECONDS
        + 2 * settings.SWEEPER_INTERVAL_SECONDS
    )


def limits_checked_after_charge(*, limits: Limits) -> bool:
    """Whether limits_check_charged has something to check for these limits."""
    return limits.monthly_credits is not None or (limits.concurrency is not None and not backends.redis())


def limits_check_charged(*, generation: Generation, limits: Limits) -> None:
    """Inside the charging transaction, after credits_charge took the account's row lock and the
    key's usage counted this charge: refuse (rolling it all back) what would pass the monthly
    cap, and without Redis, a generation past the concurrency limit."""
    if limits.monthly_credits is not None:
        today = utc_day(generation.created_at)
        spent = api_key_month_credits(api_key_id=generation.api_key_id, today=today)
        if spent > limits.monthly_credits:
            until_next_month = _seconds_until_next_month(timezone.now())
            raise MonthlyCreditCapReached(
                f"This API key may spend {limits.monthly_credits} credits a month;"
                f" {spent - generation.credits_requested} spent, {generation.credits_requested} requested",
                limit=limits.monthly_credits,
                remaining=limits.monthly_credits - (spent - generation.credits_requested),
                reset=until_next_month,
                retry_after=until_next_month,
            )
    if limits.concurrency is not None and not backends.redis():
        unfinished = Generation.objects.filter(
            api_key_id=generation.api_key_id, status__in=[GenerationStatus.QUEUED, GenerationStatus.RUNNING]
        )
        if unfinished.exclude(pk=generation.pk).count() >= limits.concurrency:
            raise _concurrency_limited(limits.concurrency)


def _seconds_until_next_month(now: datetime) -> int:
    now = now.astimezone(UTC)
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + timedelta(days=32)).replace(day=1)
    return int((following - now).total_seconds()) + 1


def slot_release_and_announce(*, api_key_id: str | None, generation_id: str) -> None:
    """After the commit that finished a generation: free its concurrency slot (idempotent) and
    wake its sync waiter (generations.completion), in one Redis round trip — as two they were ~4.5 % of
    a generation worker's busy samples (bench sync-c32-0s, py-spy). Both are made good if lost
    to a Redis fault: `slots_reconcile` drops the slot, and the waiter re-reads its row."""
    if not backends.redis():
        return
    pipe = redis_client().pipeline(transaction=False)
    if api_key_id is not None:
        ratelimit.slot_release(name=api_key_id, member=generation_id, client=pipe)
    completion.publish_done(generation_id, client=pipe)
    try:
        pipe.execute()
    except (redis.RedisError, OSError) as exc:
        logger.warning(
            "generation %s: could not release its slot or announce its finish (the sweeper and its waiter's "
            "re-read will): %s",
            generation_id,
            exc,
        )


def slots_reconcile() -> int:
    """Drop slots whose generation finished, or never appeared (a request that died between
    taking the slot and committing) — the sweeper's job. Only keys of this database are
    touched. The number dropped."""
    if not backends.redis():
        return 0
    held = ratelimit.slots_held()
    known_keys = set(ApiKey.objects.filter(pk__in=held).values_list("pk", flat=True))
    cutoff = (timezone.now() - SLOT_GRACE).timestamp()
    dropped = 0
    for key_id in known_keys:
        members = held[key_id]
        status = dict(Generation.objects.filter(pk__in=members).values_list("pk", "status"))
        gone = [
            member
            for member, taken in members.items()
            if status.get(member) not in (GenerationStatus.QUEUED, GenerationStatus.RUNNING)
            and (member in status or taken < cutoff)
        ]
        dropped += ratelimit.slots_drop(name=key_id, members=gone)
    if dropped:
        logger.warning("sweep: released %s leaked concurrency slot(s)", dropped)
    return dropped
