import hashlib
import hmac
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apikeys.models import DISPLAY_LENGTH, KEY_PREFIX, KEY_RANDOM_LENGTH, ApiKey, EmailVerification
from apikeys.selectors import email_verification_pending
from hub.errors import EmailNotVerified, ExpiredApiKey, InvalidApiKey
from hub.ids import random_token

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
    key = ApiKey.objects.select_related("owner", "owner__email_verification").filter(digest=digest).first()
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
