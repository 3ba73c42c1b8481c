"""Webhook delivery, driven attempt by attempt in the test process (no broker): signatures a
real receiver verifies with the `standardwebhooks` library, the retry schedule, 410, redirects,
timeouts, and the SSRF refusals — which must not send traffic anywhere."""

import socket
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from standardwebhooks import Webhook

from generations import webhooks as webhook_services
from generations.models import Generation, WebhookAttempt, WebhookDelivery
from generations.services import generation_cancel, generation_claim
from generations.webhook_urls import address_refusal
from generations.webhooks import webhook_delivery_claim, webhook_delivery_redeliver, webhook_secret_get_or_create
from tests.conftest import free_port
from tests.factories import create_generation, make_generation, make_user
from tests.reconcile import assert_reconciled
from tests.webhooks.receiver import Receiver
from workers.webhooks import webhook_deliver

pytestmark = pytest.mark.django_db
NO_WAIT = override_settings(WEBHOOK_RETRY_DELAYS_SECONDS=(0, 0, 0))


def finished(url: str, **webhook):
    """A succeeded generation with a webhook to `url`, and its `completed` delivery."""
    owner = make_user(credits=100)
    generation = make_generation(owner, webhook_url=url, webhook_base_url="http://hub.test", **webhook)
    return generation, WebhookDelivery.objects.get(generation=generation, event="completed")


def attempts(delivery) -> list[WebhookAttempt]:
    return list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number"))


def test_posts_the_generation_signed_so_standardwebhooks_verifies_it():
    with Receiver(200) as receiver:
        generation, delivery = finished(receiver.url)
        webhook_deliver(delivery.id)
    [received] = receiver.received
    secret = webhook_secret_get_or_create(user=generation.owner).secret
    assert secret.startswith("whsec_")
    payload = Webhook(secret).verify(received.body, received.headers)
    assert received.headers["webhook-id"] == delivery.id and delivery.id.startswith("msg_")
    assert received.headers["webhook-signature"].startswith("v1,")
    assert payload["type"] == "generation.completed"
    assert payload["data"]["id"] == generation.id and payload["data"]["status"] == "succeeded"
    assert [image["id"] for image in payload["data"]["images"]] == [image.id for image in generation.images.all()]
    assert all(image["url"].startswith("http") for image in payload["data"]["images"])  # absolute, as the API
    delivery.refresh_from_db()
    assert delivery.status == "succeeded" and delivery.next_attempt_at is None
    [attempt] = attempts(delivery)
    assert attempt.status_code == 200 and attempt.error == "" and attempt.latency_ms >= 0
    assert_reconciled()


def test_another_secret_does_not_verify_it():
    with Receiver(200) as receiver:
        _, delivery = finished(receiver.url)
        webhook_deliver(delivery.id)
    other = webhook_secret_get_or_create(user=make_user()).secret
    with pytest.raises(Exception, match="signature"):
        Webhook(other).verify(receiver.received[0].body, receiver.received[0].headers)


@NO_WAIT
def test_fails_twice_then_succeeds_three_attempts_one_success():
    with Receiver(500, 503, 200) as receiver:
        _, delivery = finished(receiver.url)
        for _ in range(3):
            webhook_deliver(delivery.id)
        webhook_deliver(delivery.id)  # a duplicate message after the success: nothing to send
    assert len(receiver.received) == 3
    assert {r.headers["webhook-id"] for r in receiver.received} == {delivery.id}  # stable across retries
    assert [a.status_code for a in attempts(delivery)] == [500, 503, 200]
    assert sum(a.succeeded for a in attempts(delivery)) == 1
    delivery.refresh_from_db()
    assert delivery.status == "succeeded" and delivery.attempts == 3


def test_a_failed_attempt_waits_for_the_schedule_with_jitter():
    assert sum(settings.WEBHOOK_RETRY_DELAYS_SECONDS) >= 24 * 3600
    with Receiver(500) as receiver:
        _, delivery = finished(receiver.url)
        before = timezone.now()
        webhook_deliver(delivery.id)
        webhook_deliver(delivery.id)  # not due yet: nothing sent
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.schedule_step == 1
    first = settings.WEBHOOK_RETRY_DELAYS_SECONDS[0]
    assert before + timedelta(seconds=first) <= delivery.next_attempt_at
    assert delivery.next_attempt_at <= timezone.now() + timedelta(seconds=first * 1.25)
    assert len(receiver.received) == 1


@override_settings(WEBHOOK_RETRY_DELAYS_SECONDS=(0,))
def test_fails_once_the_schedule_runs_out():
    with Receiver(500, 502, 200) as receiver:
        _, delivery = finished(receiver.url)
        for _ in range(3):
            webhook_deliver(delivery.id)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert len(receiver.received) == 2


@NO_WAIT
def test_410_stops_the_delivery():
    with Receiver(410, 200) as receiver:
        _, delivery = finished(receiver.url)
        webhook_deliver(delivery.id)
        webhook_deliver(delivery.id)
    delivery.refresh_from_db()
    assert delivery.status == "gone" and len(receiver.received) == 1


@NO_WAIT
def test_a_redirect_is_not_followed_and_counts_as_a_failure():
    with Receiver() as target, Receiver(302, location=target.url) as receiver:
        _, delivery = finished(receiver.url)
        webhook_deliver(delivery.id)
    assert target.received == []
    [attempt] = attempts(delivery)
    assert attempt.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == "pending"  # retried on the schedule


@NO_WAIT
@override_settings(WEBHOOK_TIMEOUT_SECONDS=0.3)
def test_a_receiver_slower_than_the_timeout_is_a_timeout():
    with Receiver(("sleep", 1.5)) as receiver:
        _, delivery = finished(receiver.url)
        webhook_deliver(delivery.id)
    [attempt] = attempts(delivery)
    assert attempt.error == "timeout" and attempt.status_code is None
    assert 250 <= attempt.latency_ms < 1500
    delivery.refresh_from_db()
    assert delivery.status == "pending"


@NO_WAIT
@override_settings(WEBHOOK_TIMEOUT_SECONDS=0.5)
def test_the_timeout_bounds_the_whole_attempt_not_each_read():
    with Receiver(("dribble", 3)) as receiver:
        _, delivery = finished(receiver.url)
        webhook_deliver(delivery.id)
    [attempt] = attempts(delivery)
    assert attempt.error == "timeout" and attempt.latency_ms < 2000


@NO_WAIT
def test_a_connection_error_is_retried():
    port = free_port()  # nothing listens there: the connection is refused
    _, delivery = finished(f"http://127.0.0.1:{port}/hook")
    webhook_deliver(delivery.id)
    [attempt] = attempts(delivery)
    assert attempt.error == "connection_error"
    delivery.refresh_from_db()
    assert delivery.status == "pending"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://a..b/", "empty label"),
        (f"http://{'a' * 64}.example/", "longer than 63"),
        ("http://0177.0.0.1/", "write it as 127.0.0.1"),
        ("http://example.com:99999/", "port"),
    ],
)
def test_a_url_stored_before_its_rule_existed_fails_at_once_with_an_attempt(url, says):
    """Such a URL once raised in every attempt, unrecorded, and the sweeper claimed it again for
    ever (or it was retried for 27 hours): now one attempt says why, and the delivery is over."""
    _, delivery = finished(url)
    webhook_deliver(delivery.id)
    [attempt] = attempts(delivery)
    assert attempt.error == "invalid_url" and says in attempt.detail and attempt.status_code is None
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    assert webhook_services.webhook_deliveries_send_due() == []  # nothing left for the sweeper


@override_settings(WEBHOOK_RETRY_DELAYS_SECONDS=(0,))
def test_an_attempt_that_raises_anything_is_recorded_and_the_schedule_runs_out(monkeypatch):
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == "hooks.example.test":
            raise RuntimeError("a resolver's surprise, token=s3cr3t")
        return real(host, *args, **kwargs)

    _, delivery = finished("https://hooks.example.test/hook")
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    webhook_deliver(delivery.id)
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.schedule_step == 1  # retried on the schedule
    webhook_deliver(delivery.id)
    assert [(a.number, a.error) for a in attempts(delivery)] == [(1, "attempt_error"), (2, "attempt_error")]
    assert all(a.detail == "unexpected RuntimeError" for a in attempts(delivery))  # not the message
    delivery.refresh_from_db()
    assert delivery.status == "failed"


@pytest.fixture
def no_connections(monkeypatch):
    """Record (and refuse) every TCP connection the process tries to open."""
    tried = []

    def create_connection(address, *args, **kwargs):
        tried.append(address)
        raise OSError("the test refuses every connection")

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return tried


def resolve_test_host_to(monkeypatch, address: str) -> str:
    """`hooks.example.test` resolves to `address` (in this process; no DNS is asked)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != "hooks.example.test":
            return real(host, port, *args, **kwargs)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return "https://hooks.example.test/hook"


@pytest.mark.parametrize(
    "address",
    ["10.0.0.5", "192.168.1.10", "169.254.169.254", "fd00:ec2::254", "::ffff:10.0.0.5", "0.0.0.0", "224.0.0.1"],
)
def test_a_host_resolving_to_a_private_address_is_refused_without_connecting(monkeypatch, no_connections, address):
    url = resolve_test_host_to(monkeypatch, address)
    _, delivery = finished(url)
    webhook_deliver(delivery.id)
    assert no_connections == []
    [attempt] = attempts(delivery)
    assert attempt.error == "address_refused" and address in attempt.detail
    delivery.refresh_from_db()
    assert delivery.status == "failed"  # visibly, at once: no retry makes the address safe


@override_settings(WEBHOOK_ALLOW_LOOPBACK=False)
def test_loopback_is_refused_in_production():
    with Receiver(200) as receiver:
        _, delivery = finished(receiver.url)
        webhook_deliver(delivery.id)
    assert receiver.received == []
    assert attempts(delivery)[0].error == "address_refused"


@override_settings(WEBHOOK_ALLOW_LOOPBACK=False)
def test_only_public_unicast_addresses_are_allowed():
    for allowed in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]:
        assert address_refusal(allowed) is None
    refused = ["127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "100.64.0.1", "169.254.169.254", "fe80::1%eth0"]
    refused += ["fd00:ec2::254", "::ffff:127.0.0.1", "::", "240.0.0.1", "ff02::1", "2002:a00:1::", "64:ff9b::a00:1"]
    refused += ["::127.0.0.1", "::169.254.169.254", "::ffff:0:7f00:1", "64:ff9b:1::808:808"]  # Python: "global"
    for address in refused:
        assert address_refusal(address), address


def test_the_started_event_is_recorded_once_when_the_generation_is_claimed():
    owner = make_user(credits=100)
    generation = create_generation(owner, webhook_url="https://hooks.example.test/", webhook_events=["started"])
    assert not WebhookDelivery.objects.filter(generation=generation).exists()
    generation_claim(generation_id=generation.id)
    Generation.objects.filter(pk=generation.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    generation_claim(generation_id=generation.id)  # a second attempt after a lost worker
    assert list(WebhookDelivery.objects.filter(generation=generation).values_list("event", flat=True)) == ["started"]


def test_an_attempt_is_claimed_once():
    _, delivery = finished("https://hooks.example.test/")
    assert webhook_delivery_claim(delivery_id=delivery.id) is not None
    assert webhook_delivery_claim(delivery_id=delivery.id) is None


def test_redeliver_sends_again_with_the_same_webhook_id():
    with Receiver(200, 200) as receiver:
        _, delivery = finished(receiver.url)
        webhook_deliver(delivery.id)
        webhook_delivery_redeliver(delivery_id=delivery.id)
        webhook_deliver(delivery.id)
    assert [r.headers["webhook-id"] for r in receiver.received] == [delivery.id, delivery.id]
    assert len(attempts(delivery)) == 2


def test_the_sweeper_sends_what_is_due_and_was_not_taken(monkeypatch):
    _, due = finished("https://hooks.example.test/a")
    _, fresh = finished("https://hooks.example.test/b")
    WebhookDelivery.objects.filter(pk=due.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=1))
    sent = []
    monkeypatch.setattr(webhook_services, "webhook_delivery_enqueue", lambda **kwargs: sent.append(kwargs))
    assert webhook_services.webhook_deliveries_send_due() == [due.id]
    assert sent == [{"delivery_id": due.id}]
    assert fresh.id not in [s["delivery_id"] for s in sent]


def test_a_canceled_generation_is_reported_as_completed():
    owner = make_user(credits=100)
    generation = create_generation(owner, webhook_url="https://hooks.example.test/")
    generation_cancel(owner=owner, generation_id=generation.id)
    delivery = WebhookDelivery.objects.get(generation=generation)
    assert delivery.event == "completed" and delivery.status == "pending"
    assert_reconciled()


def test_no_webhook_no_delivery():
    generation = make_generation(make_user(credits=100))
    assert not WebhookDelivery.objects.filter(generation=generation).exists()
