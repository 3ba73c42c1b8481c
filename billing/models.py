from django.conf import settings
from django.db import models
from django.db.models import F, Q

from hub.limits import LimitFields


class AccountType(models.TextChoices):
    FREE = "FREE"
    PRO = "PRO"
    ENTERPRISE = "ENTERPRISE"


class CreditAccount(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credit_account")
    account_type = models.CharField(max_length=20, choices=AccountType.choices, default=AccountType.FREE)
    # Cached sum of the ledger; changed only by billing.services, in the ledger row's transaction.
    balance = models.BigIntegerField(default=0, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(balance__gte=0), name="credit_balance_not_negative")]

    def __str__(self) -> str:
        return f"{self.user} ({self.account_type})"


class GrantSource(models.TextChoices):
    PURCHASE = "purchase"
    ADMIN = "admin"
    SIGNUP = "signup"
    PROMO = "promo"


class CreditGrant(models.Model):
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="grants")
    amount = models.PositiveIntegerField()
    remaining = models.BigIntegerField()
    expires_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)  # when its remainder was expired
    source = models.CharField(max_length=20, choices=GrantSource.choices)
    reason = models.CharField(max_length=500, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_grant_amount_positive"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=F("amount")), name="credit_grant_remaining_in_range"
            ),
        ]
        indexes = [models.Index(fields=["account", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.amount} credits ({self.remaining} left)"


class LedgerKind(models.TextChoices):
    GRANT = "grant"
    CHARGE = "charge"
    REFUND = "refund"
    EXPIRE = "expire"
    ADJUST = "adjust"


class LedgerEntry(models.Model):
    """Append-only record of every credit movement; the balance is the sum of `amount`."""

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="ledger")
    kind = models.CharField(max_length=10, choices=LedgerKind.choices)
    amount = models.BigIntegerField()  # signed: + credits in, - credits out
    balance_after = models.BigIntegerField()
    generation_id = models.CharField(max_length=40, blank=True, db_index=True)
    # Set on grants, expiries and operators' movements, not on charges and refunds (most rows):
    # indexed where set (Meta.indexes), so a charge writes no index entry for either.
    grant = models.ForeignKey(
        CreditGrant, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    memo = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["grant"], condition=Q(grant__isnull=False), name="ledger_grant_where_set"),
            models.Index(fields=["actor"], condition=Q(actor__isnull=False), name="ledger_actor_where_set"),
        ]
        constraints = [
            # The database itself refuses a second charge or a second refund of one generation.
            models.UniqueConstraint(
                fields=["generation_id", "kind"],
                condition=Q(kind__in=["charge", "refund"]),
                name="ledger_one_charge_one_refund_per_generation",
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=["charge", "refund"]) | ~Q(generation_id=""),
                name="ledger_generation_movements_name_generation",
            ),
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="ledger_balance_after_not_negative"),
            models.CheckConstraint(
                condition=Q(kind__in=["grant", "refund"], amount__gt=0)
                | Q(kind__in=["charge", "expire", "adjust"], amount__lt=0),
                name="ledger_amount_sign_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+d}"


class ChargeAllocation(models.Model):
    """Which grants a charge drew from, so a refund returns credits to the same grants."""

    entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="allocations")
    grant = models.ForeignKey(CreditGrant, on_delete=models.PROTECT, related_name="allocations")
    amount = models.PositiveIntegerField()


class AccountTypeLimits(LimitFields):
    """The limits every key of an account type gets unless the key sets its own (admin)."""

    account_type = models.CharField(max_length=20, choices=AccountType.choices, unique=True)

    class Meta:
        verbose_name = "account type limits"
        verbose_name_plural = "account type limits"

    def __str__(self) -> str:
        return f"{self.account_type} limits"
