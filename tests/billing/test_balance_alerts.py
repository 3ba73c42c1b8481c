"""Alerts: the low-balance alert — one email and one signed `credits.low` webhook to the account's
endpoint per crossing, not per charge — and the warning 7 days before a grant's credits expire,
once per grant. The charges are real generations'; the webhooks go to a real receiver on
loopback, verified with the `standardwebhooks` library as a user would."""

from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from billing.alerts import low_balance_threshold_set
from billing.models import BalanceCrossing, CreditGrant
from billing.services import account_get_or_create, charges, credits_expire_due, credits_grant
from generations.credit_alerts import balance_crossings_handle
from generations.models import WebhookDelivery
from generations.sweeper import generations_sweep
from generations.webhooks import account_webhook_set, account_webhook_url, webhook_secret_get_or_create
from hub.http.errors import InvalidRequest
from hub.infra.timefmt import iso_z
from tests.factories import create_generation, make_user
from tests.reconcile import assert_reconciled
from tests.webhooks.receiver import Receiver
from workers.webhooks import webhook_deliver

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _reconciled_afterwards():
    yield
    assert_reconciled()


def handle(account) -> None:
    balance_crossings_handle(account_id=account.pk)


def received_event(receiver, user) -> dict:
    """The one POST the receiver got, verified with the user's signing secret."""
    (received,) = receiver.received
    return Webhook(webhook_secret_get_or_create(user=user).secret).verify(received.body, received.headers)


def test_a_low_balance_alerts_once_per_crossing_by_email_and_a_signed_webhook(
    django_capture_on_commit_callbacks, mailoutbox
):
    user = make_user(email="low@example.com", credits=40)
    account = low_balance_threshold_set(account=account_get_or_create(user=user), threshold=30)
    with Receiver(200) as receiver:
        account_webhook_set(user=user, url=receiver.url)
        create_generation(user, n=2, quality="high")  # 40 → 24: under 30
        create_generation(user, n=1, quality="high")  # 24 → 16: still under, no new alert
        with django_capture_on_commit_callbacks(execute=True):
            handle(account)
            handle(account)  # a duplicate message: the alert is sent already
        (delivery,) = WebhookDelivery.objects.filter(user=user)
        webhook_deliver(delivery.id)
        event = received_event(receiver, user)

    (crossing,) = BalanceCrossing.objects.all()
    assert (crossing.alert_threshold, crossing.topup_threshold, crossing.balance_after) == (30, None, 24)
    data = {"credits": 24, "threshold": 30}
    assert event == {"type": "credits.low", "timestamp": iso_z(delivery.created_at), "data": data}
    assert (delivery.event, delivery.subject, delivery.url, delivery.generation) == (
        "credits.low",
        f"crossing {crossing.pk}",
        receiver.url,
        None,
    )
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    (email,) = mailoutbox
    assert email.to == ["low@example.com"] and email.subject == "Your GPT Image Hub balance is under 30 credits"
    assert "fell to 24 credits, under the 30 credits" in email.body

    credits_grant(account=account, amount=40)  # 16 → 56: over the threshold again
    create_generation(user, n=4, quality="high")  # 56 → 24: a second crossing, a second alert
    account_webhook_set(user=user, url="")  # …by email only: the endpoint is gone
    with django_capture_on_commit_callbacks(execute=True):
        handle(account)
    assert len(mailoutbox) == 2 and WebhookDelivery.objects.filter(user=user).count() == 1
    assert BalanceCrossing.objects.filter(alert_sent_at__isnull=False, handled_at__isnull=False).count() == 2


@pytest.mark.parametrize(
    ("one_statement_create", "one_statement_charge"), [(True, True), (False, True), (False, False)]
)
def test_every_charge_path_records_the_same_crossing(monkeypatch, one_statement_create, one_statement_charge):
    """Generations' one-statement create, credits_charge's one statement, and row by row."""
    from generations.services import submit

    if not one_statement_create:
        monkeypatch.setattr(submit, "ONE_STATEMENT_CREATE", False)
    if not one_statement_charge:
        monkeypatch.setattr(charges, "ONE_STATEMENT_CHARGE", False)
    user = make_user(credits=40)
    account = low_balance_threshold_set(account=account_get_or_create(user=user), threshold=30)
    for _ in range(3):
        create_generation(user, quality="high")  # 40 → 32 → 24 (crossed) → 16 (under already)
    (crossing,) = BalanceCrossing.objects.all()
    assert (crossing.account, crossing.balance_before, crossing.balance_after) == (account, 32, 24)
    assert (crossing.alert_threshold, crossing.topup_threshold, crossing.handled_at) == (30, None, None)


def test_an_expiry_under_the_threshold_is_a_crossing():
    account = account_get_or_create(user=make_user(credits=15))
    low_balance_threshold_set(account=account, threshold=30)
    credits_grant(account=account, amount=20, expires_at=timezone.now() + timedelta(days=1))  # 35
    CreditGrant.objects.filter(account=account, expires_at__isnull=False).update(expires_at=timezone.now())
    credits_expire_due(account=account)  # 35 → 15
    (crossing,) = BalanceCrossing.objects.all()
    assert (crossing.balance_before, crossing.balance_after, crossing.alert_threshold) == (35, 15, 30)


def test_a_grant_about_to_expire_is_warned_of_once_by_email_and_webhook(django_capture_on_commit_callbacks, mailoutbox):
    user = make_user(email="expiring@example.com", credits=5)
    account = account_get_or_create(user=user)
    soon = credits_grant(account=account, amount=10, expires_at=timezone.now() + timedelta(days=3))
    credits_grant(account=account, amount=10, expires_at=timezone.now() + timedelta(days=30))  # not yet
    with Receiver(200) as receiver:
        account_webhook_set(user=user, url=receiver.url)
        with django_capture_on_commit_callbacks(execute=True):
            assert generations_sweep().expiry_warnings == 1
            assert generations_sweep().expiry_warnings == 0
        (delivery,) = WebhookDelivery.objects.filter(user=user)
        webhook_deliver(delivery.id)
        event = received_event(receiver, user)
    expiring = {"credits": 10, "expires_at": iso_z(soon.expires_at)}
    assert event["type"] == "credits.expiring" and event["data"] == {"credits": 25, "expiring": expiring}
    assert delivery.subject == f"grant {soon.pk}"
    (email,) = mailoutbox
    assert email.to == ["expiring@example.com"]
    assert email.subject == f"10 of your GPT Image Hub credits expire on {soon.expires_at:%Y-%m-%d}"
    assert "Your balance is 25 credits" in email.body
    soon.refresh_from_db()
    assert soon.expiry_warned_at is not None


def test_the_sweeper_hands_over_a_crossing_the_queue_did_not_handle():
    user = make_user(credits=40)
    account = low_balance_threshold_set(account=account_get_or_create(user=user), threshold=30)
    create_generation(user, n=2, quality="high")
    assert generations_sweep().crossings_sent == []  # just made: the queue has it
    BalanceCrossing.objects.update(created_at=timezone.now() - timedelta(minutes=1))
    assert generations_sweep().crossings_sent == [account.pk]
    handle(account)
    assert generations_sweep().crossings_sent == []


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/hook", "http://user:pw@example.com/", "http://0x7f.1/", "http://[::1]/", "http://10.0.0.1/"],
)
def test_an_account_endpoint_is_held_to_the_webhook_url_rules(url, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    user = make_user()
    with pytest.raises(InvalidRequest) as refused:
        account_webhook_set(user=user, url=url)
    assert refused.value.param == "webhook_url" and "webhook_url" in refused.value.message
    assert account_webhook_url(user=user) == ""
    account_webhook_set(user=user, url="https://example.com/hooks/hub")
    assert account_webhook_url(user=user) == "https://example.com/hooks/hub"
