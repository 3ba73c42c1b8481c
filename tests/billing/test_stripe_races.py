"""Stripe's deliveries racing each other on the real database: threads, each with its own
connection, released together (tests/concurrency.py). Stripe retries a delivery it saw no 2xx
for in time, so the same event can arrive while its first delivery is still being applied, and
a purchase's events can arrive in any order. And a crossing's auto top-up may be run by several
workers at once (a duplicate message, the sweeper's hand-over)."""

import pytest

from billing.models import (
    BalanceCrossing,
    CreditAccount,
    CreditGrant,
    LedgerEntry,
    LedgerKind,
    ProcessedStripeEvent,
    Purchase,
)
from generations.credit_alerts import balance_crossings_handle
from tests.billing.stripe_helpers import autotopup_on, checkout, deliver, make_pack
from tests.concurrency import run_together
from tests.factories import create_generation, make_user
from tests.reconcile import assert_reconciled

pytestmark = pytest.mark.django_db(transaction=True)


def _deliver_together(fake, events) -> list[dict]:
    answers = []

    def one(event):
        response = deliver(fake, event)
        answers.append((response.status_code, response.json()))

    run_together([lambda event=event: one(event) for event in events])
    assert [status for status, _ in answers] == [200] * len(events), answers
    return [body for _, body in answers]


def test_ten_parallel_deliveries_of_one_event_grant_the_pack_once(api, fake_stripe):
    user = make_user()
    purchase = checkout(api, user, make_pack(credits=500))
    (event,) = fake_stripe.pay(purchase.stripe_session_id)

    answers = _deliver_together(fake_stripe, [event] * 10)

    assert sorted(body["applied"] for body in answers) == [False] * 9 + [True]
    assert CreditAccount.objects.get(user=user).balance == 500
    assert CreditGrant.objects.filter(purchase=purchase).count() == 1
    assert LedgerEntry.objects.filter(account__user=user, kind=LedgerKind.GRANT).count() == 1
    assert ProcessedStripeEvent.objects.filter(event_id=event["id"]).count() == 1
    assert Purchase.objects.get().status == "paid"
    assert_reconciled()


def test_a_delayed_payment_s_two_events_each_delivered_ten_times_at_once_grant_once(api, fake_stripe):
    user = make_user()
    purchase = checkout(api, user, make_pack(credits=300))
    (completed,) = fake_stripe.pay(purchase.stripe_session_id, async_payment=True)
    (succeeded,) = fake_stripe.settle(purchase.stripe_session_id)

    answers = _deliver_together(fake_stripe, [completed, succeeded] * 10)

    assert sum(body["applied"] for body in answers) == 2  # each event once
    assert CreditAccount.objects.get(user=user).balance == 300
    assert CreditGrant.objects.filter(purchase=purchase).count() == 1
    assert Purchase.objects.get().status == "paid"
    assert_reconciled()


def test_a_refund_and_a_dispute_delivered_together_take_back_the_credits_once(api, fake_stripe):
    user = make_user()
    purchase = checkout(api, user, make_pack(credits=500))
    (paid,) = fake_stripe.pay(purchase.stripe_session_id)
    deliver(fake_stripe, paid)
    purchase.refresh_from_db()
    (refunded,) = fake_stripe.refund(purchase.stripe_payment_intent_id)
    (disputed,) = fake_stripe.dispute(purchase.stripe_payment_intent_id)

    _deliver_together(fake_stripe, [refunded, disputed] * 5)

    purchase.refresh_from_db()
    assert (purchase.credits_taken_back, purchase.credits_shortfall) == (500, 0)
    assert CreditAccount.objects.get(user=user).balance == 0
    reversals = LedgerEntry.objects.filter(kind=LedgerKind.REVERSAL).values_list("amount", flat=True)
    assert sum(reversals) == -500
    assert_reconciled()


def test_workers_racing_on_one_crossing_make_one_payment_one_purchase_one_grant(
    fake_stripe, unconsumed_housekeeping_queue
):
    """Duplicate messages of one crossing's task, run at once by four workers: each makes the
    crossing's purchase or finds it, and any that pays sends the crossing's idempotency key. The
    crossing's own task goes where no worker reads: a session worker (with no Stripe of its own)
    took it once and settled the crossing without a top-up before the four did."""
    user = make_user(credits=40)
    account = CreditAccount.objects.get(user=user)
    autotopup_on(fake_stripe, user, make_pack(credits=40), threshold=30)
    create_generation(user, n=2, quality="high")  # 40 → 24: one crossing
    (crossing,) = BalanceCrossing.objects.all()

    run_together([lambda: balance_crossings_handle(account_id=account.pk)] * 4)

    assert len(fake_stripe.payment_intents) == 1
    sent = [r for r in fake_stripe.requests if (r.method, r.path) == ("POST", "/v1/payment_intents")]
    assert {r.headers["idempotency-key"] for r in sent} == {f"autotopup-{account.pk}-{crossing.pk}"}
    (purchase,) = Purchase.objects.all()
    assert purchase.status == "paid" and purchase.crossing == crossing
    assert CreditGrant.objects.filter(purchase=purchase).count() == 1
    assert CreditAccount.objects.get(user=user).balance == 64
    assert BalanceCrossing.objects.get().handled_at is not None
    assert_reconciled()
