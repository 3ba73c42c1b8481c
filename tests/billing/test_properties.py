"""Property test of the credit arithmetic: random sequences of grants, charges, refunds,
claw-backs, sweeps and clock advances keep every ledger invariant after every step, and a
plain-Python model of the account agrees with the database, grant by grant.

Each example gets a fresh user and account (the `db` fixture's transaction spans the whole
test, so examples do not roll back between each other); `timezone.now()` is a controllable
clock for the whole run.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from unittest.mock import patch

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError
from django.db.models import F, Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from billing.models import ChargeAllocation, CreditAccount, CreditGrant, LedgerEntry, LedgerKind
from billing.selectors import ledger_drift
from billing.services import (
    account_get_or_create,
    credits_charge,
    credits_clawback,
    credits_expire_due,
    credits_grant,
    credits_refund,
)
from hub.http.errors import HubError, InsufficientCredits, InvalidRequest

START = datetime(2030, 1, 1, tzinfo=UTC)
_ids = count(1)


class Clock:
    """Stands in for django.utils.timezone.now; only ever moves forward within an example."""

    def __init__(self):
        self.now = START

    def __call__(self) -> datetime:
        return self.now


CLOCK = Clock()


@dataclass
class ModelGrant:
    pk: int
    amount: int
    remaining: int
    expires_at: datetime | None
    seq: int

    def live(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


class CreditLedgerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        CLOCK.now = START
        user = get_user_model().objects.create(username=f"prop-{next(_ids)}@example.com")
        self.account = account_get_or_create(user=user)
        self.balance = 0  # the model's expected balance
        self.grants: dict[int, ModelGrant] = {}
        self.charges: dict[str, tuple[int, list[tuple[int, int]]]] = {}  # gen → (amount, [(grant pk, drawn)])
        self.refunds: dict[str, tuple[int, int]] = {}  # gen → (ledger entry pk, amount)
        self.seq = 0

    # --- model helpers ----------------------------------------------------------------------

    def spendable(self) -> int:
        return sum(g.remaining for g in self.grants.values() if g.live(CLOCK.now))

    def model_expire(self) -> int:
        expired = 0
        for g in self.grants.values():
            if g.remaining and not g.live(CLOCK.now):
                expired += g.remaining
                g.remaining = 0
        self.balance -= expired
        return expired

    def model_draw(self, amount: int) -> list[tuple[int, int]]:
        """Soonest-expiring first, never-expiring last, older first among equals."""
        order = sorted(
            (g for g in self.grants.values() if g.remaining and g.live(CLOCK.now)),
            key=lambda g: (g.expires_at is None, g.expires_at or START, g.seq),
        )
        draws, left = [], amount
        for g in order:
            take = min(left, g.remaining)
            g.remaining -= take
            draws.append((g.pk, take))
            left -= take
            if not left:
                break
        assert left == 0
        self.balance -= amount
        return draws

    def new_generation_id(self) -> str:
        return f"gen_prop_{next(_ids)}"

    def db_state(self):
        return (
            CreditAccount.objects.get(pk=self.account.pk).balance,
            sorted(CreditGrant.objects.filter(account=self.account).values_list("pk", "remaining")),
            LedgerEntry.objects.filter(account=self.account).count(),
        )

    # --- rules ------------------------------------------------------------------------------

    @rule(amount=st.integers(1, 20), expires_in_hours=st.none() | st.integers(-24, 96))
    def grant(self, amount, expires_in_hours):
        expires_at = None if expires_in_hours is None else CLOCK.now + timedelta(hours=expires_in_hours)
        if expires_at is not None and expires_at <= CLOCK.now:  # a grant cannot be born expired
            before = self.db_state()
            with pytest.raises(InvalidRequest):
                credits_grant(account=self.account, amount=amount, expires_at=expires_at)
            assert self.db_state() == before
            return
        grant = credits_grant(account=self.account, amount=amount, expires_at=expires_at)
        self.seq += 1
        self.grants[grant.pk] = ModelGrant(grant.pk, amount, amount, expires_at, self.seq)
        self.balance += amount

    @rule(amount=st.integers(1, 40), data=st.data())
    def charge(self, amount, data):
        again = bool(self.charges) and data.draw(st.integers(0, 4)) == 0
        generation_id = data.draw(st.sampled_from(list(self.charges))) if again else self.new_generation_id()
        if again or amount > self.spendable():
            # short of credits, or a second charge of one generation: refused, all or nothing
            before = self.db_state()
            with pytest.raises(IntegrityError if amount <= self.spendable() else InsufficientCredits):
                credits_charge(account=self.account, amount=amount, generation_id=generation_id)
            assert self.db_state() == before
            return
        entry = credits_charge(account=self.account, amount=amount, generation_id=generation_id)
        self.model_expire()
        draws = self.model_draw(amount)
        assert sorted(ChargeAllocation.objects.filter(entry=entry).values_list("grant_id", "amount")) == sorted(draws)
        self.charges[generation_id] = (amount, draws)

    @precondition(lambda self: self.charges)
    @rule(data=st.data())
    def refund(self, data):
        generation_id = data.draw(st.sampled_from(list(self.charges)))
        charged, draws = self.charges[generation_id]
        how = data.draw(st.sampled_from(["full", "partial", "partial", "too_much"]))
        amount = {
            "full": lambda: charged,
            "partial": lambda: data.draw(st.integers(1, charged)),
            "too_much": lambda: charged + data.draw(st.integers(1, 10)),
        }[how]()

        if generation_id in self.refunds:  # a repeat moves nothing and answers the first refund
            before = self.db_state()
            entry = credits_refund(account=self.account, generation_id=generation_id, amount=amount)
            assert entry.pk == self.refunds[generation_id][0]
            assert self.db_state() == before
            return
        if amount > charged:
            before = self.db_state()
            with pytest.raises((ValueError, HubError)):
                credits_refund(account=self.account, generation_id=generation_id, amount=amount)
            assert self.db_state() == before
            return

        entry = credits_refund(account=self.account, generation_id=generation_id, amount=amount)
        assert (entry.kind, entry.amount) == (LedgerKind.REFUND, amount)
        # back to the grants the charge drew from, latest-expiring (never-expiring) first
        order = sorted(
            draws,
            key=lambda d: (
                self.grants[d[0]].expires_at is not None,
                -(self.grants[d[0]].expires_at or START).timestamp(),
                -d[0],
            ),
        )
        left = amount
        for pk, drawn in order:
            back = min(left, drawn)
            self.grants[pk].remaining += back
            left -= back
            if not left:
                break
        self.balance += amount
        self.model_expire()  # credits returned to an expired grant expire again at once
        self.refunds[generation_id] = (entry.pk, amount)

    @rule(amount=st.integers(1, 60))
    def clawback(self, amount):
        if amount > self.spendable():
            before = self.db_state()
            with pytest.raises(InsufficientCredits):
                credits_clawback(account=self.account, amount=amount, actor=None, reason="property test")
            assert self.db_state() == before
            return
        entry = credits_clawback(account=self.account, amount=amount, actor=None, reason="property test")
        assert (entry.kind, entry.amount) == (LedgerKind.ADJUST, -amount)
        self.model_expire()
        self.model_draw(amount)

    @rule(hours=st.integers(1, 72))
    def advance_clock(self, hours):
        CLOCK.now += timedelta(hours=hours)

    @rule()
    def sweep(self):
        assert credits_expire_due(account=self.account) == self.model_expire()

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def balances_agree(self):
        balance = CreditAccount.objects.get(pk=self.account.pk).balance
        ledger = LedgerEntry.objects.filter(account=self.account).aggregate(total=Sum("amount"))["total"] or 0
        grants = {
            pk: (amount, remaining)
            for pk, amount, remaining in CreditGrant.objects.filter(account=self.account).values_list(
                "pk", "amount", "remaining"
            )
        }
        assert balance == ledger == sum(r for _, r in grants.values()) == self.balance
        assert balance >= 0
        assert {pk: remaining for pk, (_, remaining) in grants.items()} == {
            pk: g.remaining for pk, g in self.grants.items()
        }
        for amount, remaining in grants.values():
            assert 0 <= remaining <= amount

    @invariant()
    def nothing_spent_from_an_expired_grant(self):
        assert not ChargeAllocation.objects.filter(
            entry__account=self.account, grant__expires_at__lte=F("entry__created_at")
        ).exists()
        assert self.spendable() <= self.balance

    @invariant()
    def one_charge_one_refund_per_generation_and_refund_within_charge(self):
        rows = list(
            LedgerEntry.objects.filter(account=self.account, kind__in=[LedgerKind.CHARGE, LedgerKind.REFUND])
            .order_by("id")
            .values_list("generation_id", "kind", "amount")
        )
        assert max(Counter((g, k) for g, k, _ in rows).values(), default=1) == 1
        charged = {g: -a for g, k, a in rows if k == LedgerKind.CHARGE}
        refunded = {g: a for g, k, a in rows if k == LedgerKind.REFUND}
        assert charged == {g: amount for g, (amount, _) in self.charges.items()}
        assert refunded == {g: amount for g, (_, amount) in self.refunds.items()}
        for generation_id, amount in refunded.items():
            assert 0 < amount <= charged[generation_id]

    @invariant()
    def ledger_is_one_sequence(self):
        running = 0
        for amount, balance_after in (
            LedgerEntry.objects.filter(account=self.account).order_by("id").values_list("amount", "balance_after")
        ):
            running += amount
            assert balance_after == running >= 0

    def teardown(self):
        assert ledger_drift() == []


@pytest.mark.slow
@pytest.mark.django_db
def test_credit_arithmetic_keeps_its_invariants():
    with patch("django.utils.timezone.now", new=CLOCK):
        run_state_machine_as_test(
            CreditLedgerMachine,
            settings=settings(
                max_examples=60,
                stateful_step_count=50,
                deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
                database=None,
            ),
        )
