"""Auto top-up: a card saved through a setup Checkout, and the pack bought off-session once each
time a charge takes the balance under the threshold — declines emailed, two in a row pausing it.

Stripe is the fake of tests/fakes/stripe_server.py; the charges are real generations' (the
one-statement charge), and the housekeeping task's work is run here as the worker runs it
(generations.credit_alerts.balance_crossings_handle). gpt-image-2 at 1024x1024 costs 8 credits an
image at high quality.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.alerts import balance_crossings_send_due
from billing.autotopup import autotopup_card_setup_start, autotopup_configure, autotopup_disable, autotopup_resume
from billing.models import AutoTopUp, BalanceCrossing, CreditAccount, CreditGrant, LedgerEntry, Purchase
from billing.services import account_get_or_create, credits_grant
from generations.credit_alerts import balance_crossings_handle
from tests.billing.stripe_helpers import autotopup_on, deliver, deliver_all, make_pack
from tests.factories import create_generation, make_user
from tests.reconcile import assert_reconciled

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _reconciled_afterwards():
    yield
    assert_reconciled()


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """What happens after a commit (emails, the card's label) happens: these tests run in one
    transaction that never commits."""

    def run(action, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return action(*args, **kwargs)

    return run


def spend(user, images: int) -> None:
    """A generation of `images` high-quality images: 8 credits each."""
    create_generation(user, n=images, quality="high")


def balance(user) -> int:
    return CreditAccount.objects.get(user=user).balance


def handle(user) -> None:
    """What the housekeeping worker does with the account's crossings."""
    balance_crossings_handle(account_id=account_get_or_create(user=user).pk)


def payments_sent(fake) -> list:
    return [r for r in fake.requests if (r.method, r.path) == ("POST", "/v1/payment_intents")]


def test_a_setup_checkout_saves_the_card_and_turns_auto_top_up_on(fake_stripe, run_on_commit):
    user = make_user(email="saver@example.com", credits=40)
    account = account_get_or_create(user=user)
    pack = make_pack(credits=40, price_cents=900)
    topup = autotopup_configure(account=account, pack_id=pack.id, threshold=30)
    assert (topup.enabled, topup.payment_method_id, topup.is_on) == (True, "", False)
    assert CreditAccount.objects.get(pk=account.pk).auto_topup_threshold is None  # no card yet

    url = autotopup_card_setup_start(account=account, email=user.email, return_url="http://testserver/account/billing/")
    autotopup_card_setup_start(account=account, email=user.email, return_url="http://testserver/account/billing/")
    customer, session, _ = fake_stripe.requests
    assert (customer.path, customer.headers["idempotency-key"]) == ("/v1/customers", f"customer-{account.pk}")
    assert customer.params == {"email": "saver@example.com", "metadata": {"account_id": str(account.pk)}}
    metadata = {"account_id": str(account.pk), "purpose": "auto_top_up"}
    assert session.params["mode"] == "setup" and session.params["payment_method_types"] == ["card"]
    assert session.params["customer"] == next(iter(fake_stripe.customers))  # one customer, used twice
    assert session.params["metadata"] == metadata
    assert session.params["setup_intent_data"]["metadata"] == metadata
    assert session.params["success_url"] == "http://testserver/account/billing/?card=saved"
    assert session.params["cancel_url"] == "http://testserver/account/billing/?card=canceled"
    assert url == f"{fake_stripe.base_url}/pay/{url.rsplit('/', 1)[1]}"

    completed, succeeded = fake_stripe.save_card(url.rsplit("/", 1)[1])
    assert deliver(fake_stripe, completed).json() == {"received": True, "applied": True}  # no purchase: nothing to pay
    run_on_commit(deliver_all, fake_stripe, [succeeded])
    topup.refresh_from_db()
    assert topup.payment_method_id == succeeded["data"]["object"]["payment_method"]
    assert topup.card_label == "visa •••• 4242" and topup.is_on
    assert CreditAccount.objects.get(pk=account.pk).auto_topup_threshold == 30
    assert not Purchase.objects.exists()


def test_a_card_saved_to_another_customer_is_not_the_account_s(fake_stripe):
    user = make_user()
    topup = autotopup_on(fake_stripe, user, make_pack(), threshold=30)
    stranger = autotopup_on(fake_stripe, make_user(), make_pack(), threshold=30)
    (session_id,) = [s["id"] for s in fake_stripe.sessions.values() if s["customer"] == stranger.stripe_customer_id]
    forged = fake_stripe.event(
        "setup_intent.succeeded",
        {
            **fake_stripe.setup_intents[fake_stripe.sessions[session_id]["setup_intent"]],
            "metadata": {"account_id": str(topup.account_id), "purpose": "auto_top_up"},
        },
    )
    deliver_all(fake_stripe, [forged])
    assert AutoTopUp.objects.get(pk=topup.pk).payment_method_id == topup.payment_method_id


def test_a_charge_under_the_threshold_buys_the_pack_once_then_again_after_the_next_crossing(fake_stripe):
    user = make_user(credits=40)
    account = account_get_or_create(user=user)
    topup = autotopup_on(fake_stripe, user, make_pack(name="Refill", credits=40, price_cents=900), threshold=30)

    spend(user, 2)  # 40 → 24: under 30
    spend(user, 1)  # 24 → 16: still under, no second crossing
    (crossing,) = BalanceCrossing.objects.all()
    assert (crossing.balance_before, crossing.balance_after, crossing.topup_threshold) == (40, 24, 30)
    handle(user)
    handle(user)  # a duplicate message finds the crossing handled

    (purchase,) = Purchase.objects.all()
    assert (purchase.kind, purchase.status, purchase.crossing, purchase.credits) == ("auto_topup", "paid", crossing, 40)
    assert balance(user) == 56
    (sent,) = payments_sent(fake_stripe)
    assert sent.headers["idempotency-key"] == f"autotopup-{account.pk}-{crossing.pk}"
    assert sent.params["off_session"] == "true" and sent.params["confirm"] == "true"
    assert (sent.params["customer"], sent.params["payment_method"]) == (
        topup.stripe_customer_id,
        topup.payment_method_id,
    )
    assert (sent.params["amount"], sent.params["currency"]) == ("900", "usd")
    assert sent.params["metadata"] == {"purchase_id": purchase.id, "purpose": "auto_top_up"}
    assert purchase.stripe_payment_intent_id == next(iter(fake_stripe.payment_intents))
    assert purchase.receipt_url.startswith(f"{fake_stripe.base_url}/receipts/")
    grant = CreditGrant.objects.get(purchase=purchase)
    assert grant.kind == "paid" and grant.reason == f"Auto top-up: Refill ({purchase.id})"
    crossing.refresh_from_db()
    assert crossing.handled_at is not None

    # Stripe's event of the same payment comes after the answer: settled already, nothing more.
    (succeeded,) = fake_stripe.events
    assert succeeded["type"] == "payment_intent.succeeded"
    assert deliver(fake_stripe, succeeded).json()["applied"] is True
    assert CreditGrant.objects.filter(purchase__isnull=False).count() == 1 and balance(user) == 56

    spend(user, 4)  # 56 → 24: the balance went back over 30, so this is a new crossing
    handle(user)
    assert balance(user) == 64
    assert Purchase.objects.filter(status="paid").count() == 2
    keys = [r.headers["idempotency-key"] for r in payments_sent(fake_stripe)]
    assert len(set(keys)) == 2 and len(fake_stripe.payment_intents) == 2

    # An auto top-up's payment refunds like any other: what is left of its credits (24: 16 were
    # spent) is taken back.
    deliver_all(fake_stripe, fake_stripe.refund(purchase.stripe_payment_intent_id))
    assert balance(user) == 40


def test_a_decline_is_emailed_and_the_second_in_a_row_pauses_auto_top_up(fake_stripe, run_on_commit, mailoutbox):
    user = make_user(email="declined@example.com", credits=40)
    account = account_get_or_create(user=user)
    topup = autotopup_on(fake_stripe, user, make_pack(name="Refill", credits=40, price_cents=900), threshold=30)

    fake_stripe.decline_next("insufficient_funds")
    spend(user, 2)  # 40 → 24
    run_on_commit(handle, user)
    (purchase,) = Purchase.objects.all()
    assert purchase.status == "failed" and balance(user) == 24
    assert purchase.failure_reason == "Your card has insufficient funds. (insufficient_funds)"
    assert purchase.stripe_payment_intent_id == next(iter(fake_stripe.payment_intents))  # the declined one
    topup.refresh_from_db()
    assert (topup.consecutive_failures, topup.paused_at) == (1, None)
    (email,) = mailoutbox
    assert email.to == ["declined@example.com"] and email.subject == "Auto top-up failed: your card was not charged"
    assert "Your card has insufficient funds." in email.body and "Refill (9.00 USD)" in email.body
    (failed,) = fake_stripe.events
    assert failed["type"] == "payment_intent.payment_failed"
    run_on_commit(deliver_all, fake_stripe, [failed])  # the same failure again: counted once
    topup.refresh_from_db()
    assert topup.consecutive_failures == 1 and len(mailoutbox) == 1

    credits_grant(account=account, amount=40)  # 24 → 64: over the threshold again
    spend(user, 4)  # 64 → 32
    fake_stripe.decline_next("expired_card")
    spend(user, 1)  # 32 → 24: the second crossing
    run_on_commit(handle, user)
    topup.refresh_from_db()
    assert topup.consecutive_failures == 2 and topup.paused_at is not None
    assert topup.pause_reason == "Your card has expired. (expired_card)"
    assert CreditAccount.objects.get(pk=account.pk).auto_topup_threshold is None
    assert mailoutbox[1].subject == "Auto top-up is paused: your card was not charged"
    assert "auto top-up is paused" in mailoutbox[1].body

    credits_grant(account=account, amount=40)  # 24 → 64
    spend(user, 4)
    spend(user, 1)  # 64 → 24: paused, so no crossing of the top-up's threshold and no third attempt
    run_on_commit(handle, user)
    assert BalanceCrossing.objects.count() == 2 and len(payments_sent(fake_stripe)) == 2
    assert len(mailoutbox) == 2

    autotopup_resume(account=account)
    assert CreditAccount.objects.get(pk=account.pk).auto_topup_threshold == 30
    credits_grant(account=account, amount=40)  # 24 → 64
    spend(user, 4)
    spend(user, 1)  # 64 → 24
    run_on_commit(handle, user)
    topup.refresh_from_db()
    assert balance(user) == 64 and topup.consecutive_failures == 0 and topup.paused_at is None
    assert Purchase.objects.filter(status="paid").count() == 1


def test_stripe_unreachable_leaves_the_crossing_for_a_retry_with_the_same_key(fake_stripe):
    user = make_user(credits=40)
    autotopup_on(fake_stripe, user, make_pack(credits=40), threshold=30)
    fake_stripe.fail_next(500)
    spend(user, 2)
    handle(user)
    (crossing,) = BalanceCrossing.objects.all()
    (purchase,) = Purchase.objects.all()
    assert crossing.handled_at is None and purchase.status == "pending" and balance(user) == 24

    assert balance_crossings_send_due() == []  # within the grace: the queue has it
    BalanceCrossing.objects.update(created_at=timezone.now() - timedelta(seconds=30))
    assert balance_crossings_send_due() == [crossing.account_id]  # the sweeper hands it over again
    handle(user)
    purchase.refresh_from_db()
    assert purchase.status == "paid" and balance(user) == 64
    first, second = payments_sent(fake_stripe)
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert len(fake_stripe.payment_intents) == 1


def test_no_top_up_when_it_was_turned_off_or_the_balance_is_back_and_a_retired_pack_pauses_it(
    fake_stripe, run_on_commit, mailoutbox
):
    user = make_user(credits=40)
    account = account_get_or_create(user=user)
    topup = autotopup_on(fake_stripe, user, make_pack(name="Old", credits=40), threshold=30)
    spend(user, 2)  # 40 → 24
    autotopup_disable(account=account)
    handle(user)
    credits_grant(account=account, amount=40)  # 64
    autotopup_configure(account=account, pack_id=topup.pack_id, threshold=30)
    spend(user, 4)
    spend(user, 1)  # 64 → 24 …
    credits_grant(account=account, amount=40)  # … and back to 64 before the worker got to it
    handle(user)
    assert not Purchase.objects.exists() and not payments_sent(fake_stripe)
    assert not BalanceCrossing.objects.filter(handled_at__isnull=True).exists()

    type(topup.pack).objects.filter(pk=topup.pack_id).update(active=False)
    spend(user, 4)
    spend(user, 1)  # 64 → 24
    run_on_commit(handle, user)
    topup.refresh_from_db()
    assert topup.paused_at is not None and topup.pause_reason == "The pack Old is no longer sold"
    assert not Purchase.objects.exists() and mailoutbox[0].subject.startswith("Auto top-up is paused")
    assert LedgerEntry.objects.filter(account=account, kind="grant").count() == 3
