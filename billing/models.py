from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

from hub.infra.ids import opaque_id
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
    # The thresholds a falling balance is watched against (billing.alerts): a charge or an expiry
    # that takes the balance from one of them or above to under it is a crossing, recorded in its
    # own transaction. On the row every charge locks and reads anyway, so an account with neither
    # set costs its charges nothing. The auto top-up's is set while it is on (billing.autotopup:
    # enabled, a card saved, not paused); AutoTopUp.threshold keeps it while it is off.
    auto_topup_threshold = models.BigIntegerField(null=True, blank=True, editable=False)
    low_balance_threshold = models.BigIntegerField(null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="credit_balance_not_negative"),
            models.CheckConstraint(
                condition=(Q(auto_topup_threshold__isnull=True) | Q(auto_topup_threshold__gt=0))
                & (Q(low_balance_threshold__isnull=True) | Q(low_balance_threshold__gt=0)),
                name="credit_account_thresholds_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.account_type})"


class GrantSource(models.TextChoices):
    PURCHASE = "purchase"
    ADMIN = "admin"
    SIGNUP = "signup"
    PROMO = "promo"


class GrantKind(models.TextChoices):
    """Paid credits were bought (a Purchase); promotional ones were given (operators, sign-up, promotions)."""

    PAID = "paid"
    PROMOTIONAL = "promotional"


class CreditGrant(models.Model):
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="grants")
    amount = models.PositiveIntegerField()
    remaining = models.BigIntegerField()
    expires_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)  # when its remainder was expired
    # When its owner was told it expires soon (generations.credit_alerts): once per grant.
    expiry_warned_at = models.DateTimeField(null=True, blank=True, editable=False)
    source = models.CharField(max_length=20, choices=GrantSource.choices)
    reason = models.CharField(max_length=500, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=12, choices=GrantKind.choices, default=GrantKind.PROMOTIONAL)
    # The purchase a paid grant came from: one grant per purchase (unique), whatever the webhooks do.
    purchase = models.OneToOneField(
        "Purchase", null=True, blank=True, on_delete=models.PROTECT, related_name="grant", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_grant_amount_positive"),
            models.CheckConstraint(
                condition=Q(remaining__gte=0) & Q(remaining__lte=F("amount")), name="credit_grant_remaining_in_range"
            ),
            models.CheckConstraint(
                condition=Q(kind="paid", purchase__isnull=False) | Q(kind="promotional", purchase__isnull=True),
                name="credit_grant_paid_iff_purchase",
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
    # What is left of a purchase's credits, taken back when its payment is refunded or disputed.
    REVERSAL = "reversal"


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
                | Q(kind__in=["charge", "expire", "adjust", "reversal"], amount__lt=0),
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


class BalanceCrossing(models.Model):
    """A charge or an expiry that took the balance from a threshold of the account or above to
    under it, written in that movement's transaction (billing.services): one row per crossing,
    whatever happens after. Handled after the commit by the housekeeping queue
    (generations.credit_alerts): the low-balance alert once (`alert_sent_at`), the auto top-up
    once (its purchase is unique per crossing); `handled_at` once both are done, and the sweeper
    hands over what is left unhandled."""

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="crossings")
    balance_before = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    # The thresholds it crossed (null: that one was not crossed, or not set).
    topup_threshold = models.BigIntegerField(null=True, blank=True)
    alert_threshold = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    alert_sent_at = models.DateTimeField(null=True, blank=True)
    handled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["created_at"], condition=Q(handled_at__isnull=True), name="crossing_unhandled"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(topup_threshold__isnull=False) | Q(alert_threshold__isnull=False),
                name="crossing_crosses_a_threshold",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.balance_before} → {self.balance_after}"


class AccountTypeLimits(LimitFields):
    """The limits every key of an account type gets unless the key sets its own (admin)."""

    account_type = models.CharField(max_length=20, choices=AccountType.choices, unique=True)
    turn_weight = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Share of the upstreams' turns when they are the bottleneck: an account of weight 2 gets"
        " twice the turns of an account of weight 1 (accounts of a type without a row: 1)",
    )

    class Meta:
        verbose_name = "account type limits"
        verbose_name_plural = "account type limits"

    def __str__(self) -> str:
        return f"{self.account_type} limits"


CURRENCY = RegexValidator(r"^[a-z]{3}$", "A three-letter ISO currency code in lower case, e.g. usd")
# Stripe's largest amount (eight digits in the smallest unit).
MAX_PRICE_CENTS = 99_999_999


def _pack_id() -> str:
    return opaque_id("pack")


class CreditPack(models.Model):
    """Credits for sale at a price (operators define them in the admin or with `hub_pack`)."""

    id = models.CharField(primary_key=True, max_length=40, default=_pack_id, editable=False)
    name = models.CharField(max_length=100)
    credits = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(10_000_000)])
    price_cents = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(MAX_PRICE_CENTS)],
        help_text="In the currency's smallest unit (cents for usd and eur; yen for jpy).",
    )
    currency = models.CharField(max_length=3, default="usd", validators=[CURRENCY])
    expires_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="The bought credits expire this many days after the payment; empty: never.",
    )
    active = models.BooleanField(
        default=True, help_text="Offered to users; a pack once sold is deactivated, not deleted."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["price_cents", "credits"]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="credit_pack_credits_positive"),
            models.CheckConstraint(condition=Q(price_cents__gt=0), name="credit_pack_price_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits} credits)"


class PurchaseKind(models.TextChoices):
    CHECKOUT = "checkout"  # a Checkout Session the user paid in Stripe's page
    AUTO_TOPUP = "auto_topup", "Auto top-up"  # charged off-session to a saved card


class PurchaseStatus(models.TextChoices):
    PENDING = "pending"  # waiting for the user to pay
    PROCESSING = "processing"  # paid by a method that settles later (Stripe's async payments)
    PAID = "paid"  # the credits were granted (refunds and disputes are amounts on the row)
    FAILED = "failed"
    EXPIRED = "expired"  # the Checkout Session expired unpaid


def _purchase_id() -> str:
    return opaque_id("pur")


class Purchase(models.Model):
    """One payment for credits. What it grants (credits, expiry) and what it must cost are copied
    from the pack when the checkout starts: Stripe's events are checked against this row, never
    trusted for amounts. Written by billing.payments only."""

    id = models.CharField(primary_key=True, max_length=40, default=_purchase_id, editable=False)
    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="purchases")
    pack = models.ForeignKey(CreditPack, null=True, blank=True, on_delete=models.PROTECT, related_name="purchases")
    kind = models.CharField(max_length=12, choices=PurchaseKind.choices, default=PurchaseKind.CHECKOUT)
    status = models.CharField(max_length=12, choices=PurchaseStatus.choices, default=PurchaseStatus.PENDING)
    credits = models.PositiveIntegerField()
    amount_cents = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    expires_days = models.PositiveIntegerField(null=True, blank=True)
    stripe_session_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    stripe_payment_intent_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    # An auto top-up's: the crossing it buys for — one purchase per crossing, however many
    # workers run its task (billing.payments.autotopup_charge).
    crossing = models.OneToOneField(
        BalanceCrossing, null=True, blank=True, on_delete=models.PROTECT, related_name="purchase", editable=False
    )
    receipt_url = models.CharField(max_length=1000, blank=True)  # http(s) only: billing.payments checks
    # Cumulative, as Stripe reports them (an event repeated or late changes nothing).
    amount_refunded_cents = models.PositiveIntegerField(default=0)
    amount_disputed_cents = models.PositiveIntegerField(default=0)
    # Of the credits the refunds and disputes call back: what was taken from the grant, and what
    # was no longer there (spent or expired) — the operator's to settle.
    credits_taken_back = models.PositiveIntegerField(default=0)
    credits_shortfall = models.PositiveIntegerField(default=0)
    failure_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="purchase_account_created"),
            models.Index(fields=["status", "-created_at"], name="purchase_status_created"),
            models.Index(fields=["paid_at"], condition=Q(paid_at__isnull=False), name="purchase_paid_at"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="purchase_credits_positive"),
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="purchase_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount_refunded_cents__lte=F("amount_cents"))
                & Q(amount_disputed_cents__lte=F("amount_cents")),
                name="purchase_refunds_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(credits_taken_back__lte=F("credits") - F("credits_shortfall")),
                name="purchase_takes_back_at_most_its_credits",
            ),
            models.CheckConstraint(
                condition=Q(status="paid", paid_at__isnull=False) | (~Q(status="paid") & Q(paid_at__isnull=True)),
                name="purchase_paid_at_iff_paid",
            ),
            models.CheckConstraint(
                condition=Q(kind="auto_topup", crossing__isnull=False) | Q(kind="checkout", crossing__isnull=True),
                name="purchase_auto_topup_iff_crossing",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.credits} credits, {self.status})"

    @property
    def amount_called_back_cents(self) -> int:
        """What refunds and disputes took back of the payment, at most all of it."""
        return min(self.amount_cents, self.amount_refunded_cents + self.amount_disputed_cents)

    @property
    def credits_called_back(self) -> int:
        """The credits the refunds and disputes call back: the refunded share of the purchase's
        credits, rounded down (the user keeps the fraction)."""
        return self.credits * self.amount_called_back_cents // self.amount_cents

    @property
    def display_status(self) -> str:
        if self.status != PurchaseStatus.PAID:
            return self.get_status_display()
        if self.amount_disputed_cents:
            return "Disputed"
        if self.amount_refunded_cents >= self.amount_cents:
            return "Refunded"
        if self.amount_refunded_cents:
            return "Partly refunded"
        return "Paid"


class ProcessedStripeEvent(models.Model):
    """Each Stripe event id, inserted in the transaction that applies the event: a repeated or
    concurrent delivery of the same event finds it and changes nothing."""

    event_id = models.CharField(primary_key=True, max_length=255)
    type = models.CharField(max_length=100)
    purchase = models.ForeignKey(
        Purchase, null=True, blank=True, on_delete=models.PROTECT, related_name="stripe_events"
    )
    processed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-processed_at"]

    def __str__(self) -> str:
        return f"{self.event_id} ({self.type})"


class AutoTopUp(models.Model):
    """An account's auto top-up (billing.autotopup): when a charge takes the balance under
    `threshold`, the pack is bought off-session with the saved card. It is on while enabled, with
    a card and not paused — CreditAccount.auto_topup_threshold says so to the charges. Two
    failed top-ups in a row pause it until the user resumes it or saves another card; so does a
    top-up whose pack is no longer sold."""

    account = models.OneToOneField(CreditAccount, on_delete=models.CASCADE, related_name="auto_topup")
    pack = models.ForeignKey(CreditPack, on_delete=models.PROTECT, related_name="+")
    threshold = models.BigIntegerField(validators=[MinValueValidator(1)])
    enabled = models.BooleanField(default=False)
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    payment_method_id = models.CharField(max_length=255, blank=True)  # the card a setup Checkout saved
    card_label = models.CharField(max_length=100, blank=True)  # "visa •••• 4242", from Stripe
    consecutive_failures = models.PositiveSmallIntegerField(default=0)
    paused_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "auto top-up"
        constraints = [models.CheckConstraint(condition=Q(threshold__gt=0), name="auto_topup_threshold_positive")]

    def __str__(self) -> str:
        return f"{self.pack} under {self.threshold} credits"

    @property
    def is_on(self) -> bool:
        return self.enabled and bool(self.payment_method_id) and self.paused_at is None
