"""Reads of credit data. They return data (models, dataclasses); shaping is the caller's."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Count, Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Now, TruncDate
from django.utils import timezone

from billing.models import (
    AccountTypeLimits,
    AutoTopUp,
    CreditAccount,
    CreditGrant,
    CreditPack,
    GrantKind,
    LedgerEntry,
    LedgerKind,
    Purchase,
    PurchaseStatus,
)
from hub.compiled import INT_MARKER, CompiledQuery
from hub.infra.snapshot import Snapshot
from hub.limits import Limits


@dataclass(frozen=True)
class Expiration:
    credits: int
    expires_at: datetime


@dataclass(frozen=True)
class CreditsSummary:
    credits: int
    account_type: str
    next_expiration: Expiration | None


@dataclass
class GenerationMovement:
    """What the ledger moved for one generation."""

    charged: int = 0
    refunded: int = 0


def _live_grants(account_id, now):
    return CreditGrant.objects.filter(account_id=account_id, remaining__gt=0, expires_at__gt=now)


def next_expiration(*, account: CreditAccount) -> Expiration | None:
    """The soonest upcoming expiry: how many credits and when, or None."""
    now = timezone.now()
    soonest = _live_grants(account.pk, now).aggregate(at=Min("expires_at"))["at"]
    return _expiration(account.pk, soonest, now)


def _expiration(account_id, soonest: datetime | None, now: datetime) -> Expiration | None:
    if soonest is None:
        return None
    credits = _live_grants(account_id, now).filter(expires_at=soonest).aggregate(total=Sum("remaining"))["total"]
    return Expiration(credits=credits, expires_at=soonest)


def credits_summary(*, account: CreditAccount) -> CreditsSummary:
    return CreditsSummary(
        credits=account.balance, account_type=account.account_type, next_expiration=next_expiration(account=account)
    )


def _account_with_soonest_expiry(user_id):
    live = CreditGrant.objects.filter(account_id=OuterRef("pk"), remaining__gt=0, expires_at__gt=Now())
    soonest = live.order_by("expires_at").values("expires_at")[:1]
    return CreditAccount.objects.annotate(soonest=Subquery(soonest)).filter(user_id=user_id)


# The annotations credits_summary_annotations() adds, read back by credits_summary_of().
_SUMMARY_FIELDS = ("credits_account_id", "credits_balance", "credits_account_type", "credits_soonest")


def credits_summary_annotations(user_id) -> dict:
    """Annotations that read the credits summary of user `user_id` (an OuterRef, say) with
    another query's row: the sync answer reads it with its finished generation, one query
    instead of two. credits_summary_of(row) makes the summary."""
    account = CreditAccount.objects.filter(user_id=user_id)
    live = CreditGrant.objects.filter(account__user_id=user_id, remaining__gt=0, expires_at__gt=Now())
    columns = (
        account.values("pk"),
        account.values("balance"),
        account.values("account_type"),
        live.order_by("expires_at").values("expires_at"),
    )
    return {name: Subquery(column[:1]) for name, column in zip(_SUMMARY_FIELDS, columns, strict=True)}


def credits_summary_of(row) -> CreditsSummary | None:
    """The summary read by credits_summary_annotations(); None if the row was read without them
    or the user has no account."""
    account_id, balance, account_type, soonest = (getattr(row, name, None) for name in _SUMMARY_FIELDS)
    if account_id is None:
        return None
    return CreditsSummary(
        credits=balance, account_type=account_type, next_expiration=_expiration(account_id, soonest, timezone.now())
    )


# Compiled once (hub.compiled): every sync generation's answer reads it.
_ACCOUNT_WITH_SOONEST_EXPIRY = CompiledQuery(_account_with_soonest_expiry, INT_MARKER)


def credits_summary_for_user(*, user_id: int) -> CreditsSummary:
    """credits_summary of the user's account, the account and its soonest expiry read in one
    query (every sync generation's answer carries it); a second only when credits expire."""
    (account,) = _ACCOUNT_WITH_SOONEST_EXPIRY.all(user_id)
    return CreditsSummary(
        credits=account.balance,
        account_type=account.account_type,
        next_expiration=_expiration(account.pk, account.soonest, timezone.now()),
    )


def grants_for_account(*, account: CreditAccount):
    return CreditGrant.objects.filter(account=account).order_by("-created_at")


def ledger_for_account(*, account: CreditAccount):
    return LedgerEntry.objects.filter(account=account).select_related("grant").order_by("-created_at", "-id")


@dataclass(frozen=True)
class CreditsByKind:
    paid: int
    promotional: int


def credits_by_kind(*, account: CreditAccount) -> CreditsByKind:
    """The unspent credits that were bought and those that were given."""
    rows = dict(
        CreditGrant.objects.filter(account=account, remaining__gt=0)
        .values_list("kind")
        .annotate(total=Sum("remaining"))
        .values_list("kind", "total")
    )
    return CreditsByKind(paid=rows.get(GrantKind.PAID, 0), promotional=rows.get(GrantKind.PROMOTIONAL, 0))


def packs_for_sale():
    return CreditPack.objects.filter(active=True).order_by("price_cents", "credits")


def purchases_for_account(*, account: CreditAccount):
    return Purchase.objects.filter(account=account).select_related("pack").order_by("-created_at")


# The ledger rows of the Billing page: credits in and out other than generations' charges and refunds.
BILLING_HISTORY_KINDS = [LedgerKind.GRANT, LedgerKind.EXPIRE, LedgerKind.REVERSAL, LedgerKind.ADJUST]


def billing_history_for_account(*, account: CreditAccount):
    return ledger_for_account(account=account).filter(kind__in=BILLING_HISTORY_KINDS)


@dataclass(frozen=True)
class RevenueDay:
    day: date
    currency: str
    purchases: int
    gross_cents: int
    refunded_cents: int

    @property
    def net_cents(self) -> int:
        return self.gross_cents - self.refunded_cents


def revenue_per_day(*, days: int) -> list[RevenueDay]:
    """Paid purchases per UTC day of payment and currency, newest first, with what refunds and
    disputes took back of them (counted on the purchase's day)."""
    since = timezone.now() - timedelta(days=days)
    rows = (
        Purchase.objects.filter(status=PurchaseStatus.PAID, paid_at__gte=since)
        .annotate(day=TruncDate("paid_at"))
        .values("day", "currency")
        .annotate(
            purchases=Count("id"),
            gross=Sum("amount_cents"),
            refunded=Sum("amount_refunded_cents"),
            disputed=Sum("amount_disputed_cents"),
        )
        .order_by("-day", "currency")
    )
    return [
        RevenueDay(
            day=row["day"],
            currency=row["currency"],
            purchases=row["purchases"],
            gross_cents=row["gross"],
            refunded_cents=min(row["gross"], row["refunded"] + row["disputed"]),
        )
        for row in rows
    ]


def ledger_for_generation(*, generation_id: str):
    return LedgerEntry.objects.filter(generation_id=generation_id).order_by("created_at", "id")


def generation_movements() -> dict[str, GenerationMovement]:
    """Charge and refund per generation id, for reconciling the ledger with the generations."""
    movements: dict[str, GenerationMovement] = defaultdict(GenerationMovement)
    rows = LedgerEntry.objects.filter(kind__in=[LedgerKind.CHARGE, LedgerKind.REFUND])
    for generation_id, kind, amount in rows.values_list("generation_id", "kind", "amount"):
        if kind == LedgerKind.CHARGE:
            movements[generation_id].charged = -amount
        else:
            movements[generation_id].refunded = amount
    return dict(movements)


def ledger_drift() -> list[str]:
    """Every way the cached balances disagree with the ledger and the grants."""
    problems = []
    ledger_sums = dict(
        LedgerEntry.objects.values_list("account").annotate(total=Sum("amount")).values_list("account", "total")
    )
    grant_sums = dict(
        CreditGrant.objects.values_list("account").annotate(total=Sum("remaining")).values_list("account", "total")
    )
    for account in CreditAccount.objects.all():
        ledger = ledger_sums.get(account.pk, 0)
        grants = grant_sums.get(account.pk, 0)
        if account.balance != ledger:
            problems.append(f"account {account.pk}: balance {account.balance} != ledger sum {ledger}")
        if account.balance != grants:
            problems.append(f"account {account.pk}: balance {account.balance} != unspent grants {grants}")
    overdrawn = CreditGrant.objects.filter(Q(remaining__lt=0))
    problems += [f"grant {g.pk}: negative remaining {g.remaining}" for g in overdrawn]
    return problems + purchase_drift() + auto_topup_drift()


def purchase_drift() -> list[str]:
    """Every way the purchases disagree with their grants and the ledger: a paid purchase has one
    paid grant of its credits and nothing else does; what its refunds and disputes called back was
    taken from the grant (its reversal rows) or counted as its shortfall, never more."""
    problems = []
    reversed_by_grant = dict(
        LedgerEntry.objects.filter(kind=LedgerKind.REVERSAL)
        .values_list("grant")
        .annotate(total=Sum("amount"))
        .values_list("grant", "total")
    )
    grants = {grant.purchase_id: grant for grant in CreditGrant.objects.filter(purchase__isnull=False)}
    for purchase in Purchase.objects.all():
        grant = grants.get(purchase.pk)
        name = f"purchase {purchase.pk}"
        if purchase.status != PurchaseStatus.PAID:
            if grant is not None:
                problems.append(f"{name}: {purchase.status} but granted (grant {grant.pk})")
            if purchase.credits_taken_back or purchase.credits_shortfall:
                problems.append(f"{name}: {purchase.status} but credits were taken back")
            continue
        if grant is None:
            problems.append(f"{name}: paid but no grant")
            continue
        if grant.amount != purchase.credits:
            problems.append(f"{name}: grant {grant.pk} of {grant.amount} credits, purchase of {purchase.credits}")
        taken = -reversed_by_grant.get(grant.pk, 0)
        if taken != purchase.credits_taken_back:
            problems.append(f"{name}: {purchase.credits_taken_back} credits taken back, the ledger reverses {taken}")
        called_back = purchase.credits_taken_back + purchase.credits_shortfall
        if called_back != purchase.credits_called_back:
            problems.append(f"{name}: {called_back} credits called back of {purchase.credits_called_back} due")
    return problems


def auto_topup_drift() -> list[str]:
    """Accounts whose charges watch another auto top-up threshold than their auto top-up says:
    its threshold while it is on, none otherwise (billing.autotopup writes both together)."""
    topups = {topup.account_id: topup for topup in AutoTopUp.objects.all()}
    problems = []
    watched = CreditAccount.objects.filter(Q(auto_topup_threshold__isnull=False) | Q(pk__in=list(topups)))
    for account_id, threshold in watched.values_list("pk", "auto_topup_threshold"):
        topup = topups.get(account_id)
        expected = topup.threshold if topup is not None and topup.is_on else None
        if threshold != expected:
            problems.append(f"account {account_id}: auto top-up threshold {threshold} watched, {expected} set")
    return problems


# Every account type's defaults and turn weight (hub.infra.snapshot: read on every generation
# request, edited rarely).
_type_rows = Snapshot(
    lambda: {row.account_type: (Limits.of(row), row.turn_weight) for row in AccountTypeLimits.objects.all()}
)


def account_type_limits(*, account_type: str) -> Limits:
    """The default limits of an account type's keys (none when the admin set none)."""
    row = _type_rows.get().get(account_type)
    return row[0] if row is not None else Limits()


def account_type_turn_weight(*, account_type: str) -> int:
    """An account type's share of the upstreams' turns (generations.fair); 1 without a row."""
    row = _type_rows.get().get(account_type)
    return row[1] if row is not None else 1
