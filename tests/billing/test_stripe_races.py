"""Stripe's deliveries racing each other on the real database: threads, each with its own
connection, released together (tests/concurrency.py). Stripe retries a delivery it saw no 2xx
for in time, so the same event can arrive while its first delivery is still being applied, and
a purchase's events can arrive in any order."""

import pytest

from billing.models import CreditAccount, CreditGrant, LedgerEntry, LedgerKind, ProcessedStripeEvent, Purchase
from tests.billing.stripe_helpers import checkout, deliver, make_pack
from tests.concurrency import run_together
from tests.factories import make_user
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
