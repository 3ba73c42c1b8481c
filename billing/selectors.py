"""Reads of credit data. They return data (models, dataclasses); shaping is the caller's."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Now
from django.utils import timezone

from billing.models import AccountTypeLimits, CreditAccount, CreditGrant, LedgerEntry, LedgerKind
from hub.compiled import INT_MARKER, CompiledQuery
from hub.limits import Limits
from hub.snapshot import Snapshot


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
    return LedgerEntry.objects.filter(account=account).order_by("-created_at", "-id")


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
    return problems


# Every account type's defaults (hub.snapshot: read on every generation request, edited rarely).
_type_limits = Snapshot(lambda: {row.account_type: Limits.of(row) for row in AccountTypeLimits.objects.all()})


def account_type_limits(*, account_type: str) -> Limits:
    """The default limits of an account type's keys (none when the admin set none)."""
    return _type_limits.get().get(account_type) or Limits()
