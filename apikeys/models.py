from django.conf import settings
from django.db import models
from django.db.models import F, Q

from hub.infra.ids import opaque_id
from hub.limits import LimitFields

KEY_PREFIX = "gih_live_"
KEY_RANDOM_LENGTH = 32
DISPLAY_LENGTH = len(KEY_PREFIX) + 4  # the stored, shown leading part of a key


def _key_id() -> str:
    return opaque_id("key")


class ApiKey(LimitFields):
    """A key, with its own limits (LimitFields: null = the account type's default)."""

    id = models.CharField(primary_key=True, max_length=40, default=_key_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    display_prefix = models.CharField(max_length=24)  # e.g. "gih_live_AbC4", never the whole key
    digest = models.CharField(max_length=64, unique=True)  # HMAC-SHA256(pepper, raw key), hex
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.display_prefix}… ({self.name or 'unnamed'})"

    def status(self, now) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= now:
            return "expired"
        return "active"


class EmailVerification(models.Model):
    """Whether a self-service sign-up confirmed its email address (a signed link it was sent).

    While REQUIRE_EMAIL_VERIFICATION is on, the keys of an owner whose row is unconfirmed are
    refused (`emailNotVerified`). Owners without a row — created by operators, or before this
    existed — count as confirmed.
    """

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="email_verification"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    verified_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.owner} ({'confirmed' if self.verified_at else 'unconfirmed'})"


class ApiKeyUsage(models.Model):
    """What one key was charged for, per UTC day of the generations' creation: the usage table,
    and the monthly cap's running total (≤ 31 rows a month to sum, by the unique index).

    Written only in the transactions that charge and refund (generations.services), so it moves
    with the ledger; a refund counts on the day its generation was created, so a day never shows
    more refunded than charged — which the database checks.
    """

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage")
    day = models.DateField()
    images = models.PositiveIntegerField(default=0)  # images charged for
    images_refunded = models.PositiveIntegerField(default=0)
    credits_charged = models.PositiveBigIntegerField(default=0)
    credits_refunded = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["api_key", "day"], name="one_usage_row_per_key_and_day"),
            models.CheckConstraint(
                condition=Q(credits_refunded__lte=F("credits_charged")) & Q(images_refunded__lte=F("images")),
                name="key_usage_refunds_within_charges",
            ),
        ]

    @property
    def images_net(self) -> int:
        """Images charged for and not refunded: delivered, or still to come."""
        return self.images - self.images_refunded

    @property
    def credits_net(self) -> int:
        return self.credits_charged - self.credits_refunded


class ApiKeyRateWindow(models.Model):
    """Images a key was let through in one minute — the images-per-minute limit without Redis
    (the embedded default). Taken by a conditional UPDATE (`used + n <= limit`), never read and
    written back, so concurrent requests cannot both pass; old rows are deleted by the sweeper."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField()
    used = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "window_start"], name="one_rate_window_per_minute")]
