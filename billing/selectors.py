from django.db.models import Min, Q, Sum
from django.utils import timezone

from billing.models import CreditAccount, CreditGrant, LedgerEntry
from hub.timefmt import iso_z


def next_expiration(*, account: CreditAccount) -> dict | None:
    """The soonest upcoming expiry: how many credits and when, or None."""
    live = CreditGrant.objects.filter(account=account, remaining__gt=0, expires_at__gt=timezone.now())
    soonest = live.aggregate(at=Min("expires_at"))["at"]
    if soonest is None:
        return None
    credits = live.filter(expires_at=soonest).aggregate(total=Sum("remaining"))["total"]
    return {"credits": credits, "expires_at": iso_z(soonest)}


def account_for_user(*, user_id: int) -> CreditAccount:
    return CreditAccount.objects.get(user_id=user_id)


def credits_summary(*, account: CreditAccount) -> dict:
    return {
        "credits": account.balance,
        "account_type": account.account_type,
        "next_expiration": next_expiration(account=account),
    }


def grants_for_account(*, account: CreditAccount):
    return CreditGrant.objects.filter(account=account).order_by("-created_at")


def ledger_for_account(*, account: CreditAccount):
    return LedgerEntry.objects.filter(account=account).order_by("-created_at", "-id")


def ledger_drift() -> list[str]:
    """Every way the cached balances disagree with the ledger and the grants."""
    problems = []
    ledger_sums = dict(LedgerEntry.objects.values_list("account").annotate(total=Sum("amount")).values_list("account", "total"))
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
