import hashlib
import hmac
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from apikeys.models import (
    DISPLAY_LENGTH,
    KEY_PREFIX,
    KEY_RANDOM_LENGTH,
    ApiKey,
    ApiKeyRateWindow,
    ApiKeyUsage,
    EmailVerification,
)
from apikeys.ratelimit import WINDOW_MS, Decision
from apikeys.selectors import email_verification_pending
from hub.compiled import STR_MARKER, CompiledQuery
from hub.http.errors import EmailNotVerified, ExpiredApiKey, InvalidApiKey, InvalidRequest
from hub.infra.ids import random_token
from hub.limits import LIMIT_NAMES

LAST_USED_RESOLUTION = timedelta(minutes=1)


def key_digest(raw_key: str) -> str:
    return hmac.new(settings.API_KEY_PEPPER.encode(), raw_key.encode(), hashlib.sha256).hexdigest()


def api_key_create(*, owner, name: str = "", expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Create a key; the raw key is returned once and never stored."""
    raw = KEY_PREFIX + random_token(KEY_RANDOM_LENGTH)
    key = ApiKey.objects.create(
        owner=owner, name=name, display_prefix=raw[:DISPLAY_LENGTH], digest=key_digest(raw), expires_at=expires_at
    )
    return key, raw


def api_key_revoke(*, key: ApiKey) -> ApiKey:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    key.refresh_from_db()
    return key


def api_key_authenticate(raw_key: str) -> ApiKey:
    """Resolve a presented key to an active ApiKey or raise Invalid/ExpiredApiKey.

    The lookup is by keyed digest (an index hit reveals nothing about near-miss keys), and the
    stored digest is compared again in constant time.
    """
    if not raw_key.startswith(KEY_PREFIX) or len(raw_key) != len(KEY_PREFIX) + KEY_RANDOM_LENGTH:
        raise InvalidApiKey()
    digest = key_digest(raw_key)
    key = _KEY_WITH_OWNER.first(digest)
    if key is None or not hmac.compare_digest(key.digest, digest):
        raise InvalidApiKey()
    if key.revoked_at is not None or not key.owner.is_active:
        raise InvalidApiKey()
    now = timezone.now()
    if key.expires_at is not None and key.expires_at <= now:
        raise ExpiredApiKey()
    if settings.REQUIRE_EMAIL_VERIFICATION and email_verification_pending(owner=key.owner):
        raise EmailNotVerified()
    _touch_last_used(key, now)
    return key


# Every API request runs it: the key, its owner, the owner's e-mail verification (read when
# HUB_REQUIRE_EMAIL_VERIFICATION is on) and credit account (a generation's precheck reads its
# balance: billing.services.account_as_read) in one read, compiled once (hub.compiled).
_KEY_WITH_OWNER = CompiledQuery(
    lambda digest: ApiKey.objects.select_related("owner", "owner__email_verification", "owner__credit_account").filter(
        digest=digest
    ),
    STR_MARKER,
)


def _touch_last_used(key: ApiKey, now: datetime) -> None:
    """Write last_used_at at most once a minute, not on every request."""
    if key.last_used_at and now - key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
    key.last_used_at = now


def email_verification_start(*, owner) -> EmailVerification:
    """A sign-up's address is unconfirmed until email_verification_confirm."""
    verification, _ = EmailVerification.objects.get_or_create(owner=owner)
    return verification


def email_verification_confirm(*, owner) -> None:
    EmailVerification.objects.filter(owner=owner, verified_at__isnull=True).update(verified_at=timezone.now())


def api_key_limits_set(*, key: ApiKey, **changes) -> ApiKey:
    """Set (a value) or clear (None) some of the key's limits; the others stay as they are.

    Model ids are not checked against the catalog here (it is a higher layer): callers that
    take them from people — the account page, hub_keylimits — check them first.
    """
    unknown = set(changes) - set(LIMIT_NAMES)
    if unknown:
        raise InvalidRequest(f"Unknown limit(s): {', '.join(sorted(unknown))}")
    models = changes.get("allowed_models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) and m for m in models)):
        raise InvalidRequest("allowed_models must be a list of model ids", param="allowed_models")
    if "allowed_models" in changes and not models:
        changes["allowed_models"] = None  # an empty list would allow nothing: say "no limit" instead
    for name in ("images_per_minute", "concurrency"):
        if changes.get(name) is not None and changes[name] < 1:
            raise InvalidRequest(f"{name} must be at least 1 (or none)", param=name)
    if changes.get("monthly_credits") is not None and changes["monthly_credits"] < 0:
        raise InvalidRequest("monthly_credits must not be negative", param="monthly_credits")
    ApiKey.objects.filter(pk=key.pk).update(**changes)
    key.refresh_from_db()
    return key


def api_key_usage_charge_sql(
    *, api_key_id: str, day: date, images: int, credits: int, condition: str = "WHERE TRUE"
) -> tuple[str, list]:
    """Count a charge against the key: one upsert, counted only when `condition` (a FROM and a
    WHERE) yields a row — as a common table expression, it joins a charge made in the same
    statement (generations.services.submit). Run inside the charging transaction and after its
    account lock (the order refunds take them in too: account, then usage row)."""
    table = ApiKeyUsage._meta.db_table
    return (
        f"INSERT INTO {table} (api_key_id, day, images, images_refunded, credits_charged, credits_refunded)"
        f" SELECT %s, %s, %s, 0, %s, 0 {condition} ON CONFLICT (api_key_id, day) DO UPDATE"
        f" SET images = {table}.images + excluded.images,"
        f" credits_charged = {table}.credits_charged + excluded.credits_charged",
        [api_key_id, day, images, credits],
    )


def api_key_usage_refund(*, api_key_id: str, day: date, images: int, credits: int) -> None:
    """Count a refund on the day its generation was charged (inside the refunding transaction)."""
    ApiKeyUsage.objects.filter(api_key_id=api_key_id, day=day).update(
        images_refunded=F("images_refunded") + images, credits_refunded=F("credits_refunded") + credits
    )


def api_key_rate_take_db(*, api_key_id: str, cost: int, limit: int) -> tuple[Decision, datetime]:
    """The images-per-minute limit without Redis: a fixed minute (a sliding log costs a row per
    request here), taken by one conditional UPDATE. (decision, the window to give back to)."""
    now = timezone.now()
    start = now.replace(second=0, microsecond=0)
    reset_ms = WINDOW_MS - int((now - start).total_seconds() * 1000)
    window = ApiKeyRateWindow.objects.filter(api_key_id=api_key_id, window_start=start)
    ApiKeyRateWindow.objects.bulk_create(
        [ApiKeyRateWindow(api_key_id=api_key_id, window_start=start)], ignore_conflicts=True
    )
    taken = window.filter(used__lte=limit - cost).update(used=F("used") + cost)
    used = window.values_list("used", flat=True).first() or 0
    if taken:
        return Decision(True, used, reset_ms=reset_ms), start
    return Decision(False, used, retry_after_ms=reset_ms, reset_ms=reset_ms), start


def api_key_rate_give_back_db(*, api_key_id: str, window_start: datetime, cost: int) -> None:
    ApiKeyRateWindow.objects.filter(api_key_id=api_key_id, window_start=window_start, used__gte=cost).update(
        used=F("used") - cost
    )


def api_key_rate_windows_expire() -> int:
    """Delete the minutes that are over (the sweeper's job)."""
    deleted, _ = ApiKeyRateWindow.objects.filter(
        window_start__lt=timezone.now() - timedelta(milliseconds=2 * WINDOW_MS)
    ).delete()
    return deleted
