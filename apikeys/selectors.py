from datetime import date, timedelta

from django.db.models import F, Sum

from apikeys.models import DISPLAY_LENGTH, KEY_PREFIX, ApiKey, ApiKeyUsage, EmailVerification
from hub.http.errors import NotFound


def api_keys_for_owner(*, owner):
    return ApiKey.objects.filter(owner=owner).order_by("-created_at")


def api_keys_matching(*, text: str):
    """The active keys an operator's `text` names: a key id (`key_…`), or a key's leading part —
    its display prefix (`gih_live_AbC4`), less of it, or more (only the prefix is stored, so
    only it is compared)."""
    active = ApiKey.objects.filter(revoked_at__isnull=True).select_related("owner").order_by("created_at")
    if text.startswith("key_"):
        return active.filter(pk=text)
    if not text.startswith(KEY_PREFIX) or len(text) == len(KEY_PREFIX):
        return active.none()
    if len(text) >= DISPLAY_LENGTH:
        return active.filter(display_prefix=text[:DISPLAY_LENGTH])
    return active.filter(display_prefix__startswith=text)


def api_key_get_for_owner(*, owner, key_id: str) -> ApiKey:
    key = ApiKey.objects.filter(owner=owner, pk=key_id).first()
    if key is None:
        raise NotFound("API key not found")
    return key


def email_verification_pending(*, owner) -> bool:
    """True for a sign-up that has not confirmed its address yet (operators' users never are)."""
    try:
        return owner.email_verification.verified_at is None
    except EmailVerification.DoesNotExist:
        return False


def api_key_month_credits(*, api_key_id: str, today: date) -> int:
    """Credits the key was charged minus refunded in today's calendar month (UTC): at most 31
    usage rows, found by the (api_key, day) unique index."""
    rows = ApiKeyUsage.objects.filter(api_key_id=api_key_id, day__gte=today.replace(day=1), day__lte=today)
    total = rows.aggregate(net=Sum(F("credits_charged") - F("credits_refunded")))["net"]
    return total or 0


def usage_for_owner(*, owner, today: date, days: int):
    """The owner's usage per key and day for the last `days` days (today included), newest
    first; only the owner's keys, through the key's owner."""
    since = today - timedelta(days=days - 1)
    return (
        ApiKeyUsage.objects.filter(api_key__owner=owner, day__gte=since)
        .select_related("api_key")
        .order_by("-day", "api_key__created_at")
    )


def usage_counters() -> dict[tuple[str, date], tuple[int, int, int, int]]:
    """Every usage row: (key id, day) → (images, images refunded, credits charged, refunded)."""
    rows = ApiKeyUsage.objects.values_list(
        "api_key_id", "day", "images", "images_refunded", "credits_charged", "credits_refunded"
    )
    return {(key_id, day): tuple(totals) for key_id, day, *totals in rows}
