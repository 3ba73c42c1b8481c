"""The webhook secret on the account page (rotatable) and from the operator command; the
delivery attempts on the generation page and in the admin, where an operator redelivers."""

import pytest
from django.contrib.admin.utils import quote
from django.core.management import call_command

from accounts.services import user_create
from generations.models import WebhookDelivery
from generations.webhooks import webhook_secret_get_or_create
from tests.factories import make_generation, make_user
from tests.webhooks.receiver import Receiver
from workers.webhooks import webhook_deliver

pytestmark = pytest.mark.django_db


def test_the_account_page_shows_the_secret_and_rotates_it(client):
    user = make_user()
    client.force_login(user)
    page = client.get("/account/")
    secret = webhook_secret_get_or_create(user=user).secret
    assert secret.startswith("whsec_") and secret in page.content.decode()
    assert "no-store" in page.headers["Cache-Control"]
    assert client.get("/account/webhooks/rotate/").status_code == 405  # a POST only
    response = client.post("/account/webhooks/rotate/")
    assert response.status_code == 302
    rotated = webhook_secret_get_or_create(user=user).secret
    assert rotated != secret and rotated.startswith("whsec_")
    assert rotated in client.get("/account/").content.decode()


def test_rotation_needs_the_csrf_token():
    from django.test import Client

    user = make_user()
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    secret = webhook_secret_get_or_create(user=user).secret
    assert client.post("/account/webhooks/rotate/").status_code == 403
    assert webhook_secret_get_or_create(user=user).secret == secret


def test_the_operator_command_prints_and_rotates_the_secret(capsys):
    user = make_user(email="hooks@example.com")
    call_command("hub_webhook_secret", "hooks@example.com")
    shown = capsys.readouterr().out.strip().splitlines()[-1]
    assert shown == webhook_secret_get_or_create(user=user).secret
    call_command("hub_webhook_secret", "HOOKS@example.com", "--rotate")
    rotated = capsys.readouterr().out.strip().splitlines()[-1]
    assert rotated.startswith("whsec_") and rotated != shown
    assert rotated == webhook_secret_get_or_create(user=user).secret


def test_the_generation_page_lists_the_attempts(client):
    user = make_user(credits=10)
    with Receiver(503) as receiver:
        generation = make_generation(user, webhook_url=receiver.url)
        delivery = WebhookDelivery.objects.get(generation=generation)
        webhook_deliver(delivery.id)
    client.force_login(user)
    page = client.get(f"/account/generations/{generation.id}/").content.decode()
    assert delivery.id in page and "HTTP 503" in page and "pending" in page
    assert 'id="webhook-attempts-completed"' in page


def test_the_admin_shows_deliveries_and_redelivers(client):
    operator = user_create(email="ops@example.com", password="ops password 1", is_staff=True)
    operator.is_superuser = True
    operator.save(update_fields=["is_superuser"])
    user = make_user(credits=10)
    with Receiver(200, 200) as receiver:
        generation = make_generation(user, webhook_url=receiver.url)
        delivery = WebhookDelivery.objects.get(generation=generation)
        webhook_deliver(delivery.id)
        client.force_login(operator)
        page = client.get(f"/admin/generations/webhookdelivery/{quote(delivery.id)}/change/").content.decode()
        assert "200" in page and delivery.id in page
        generation_page = client.get(f"/admin/generations/generation/{quote(generation.id)}/change/")
        assert delivery.id in generation_page.content.decode()
        response = client.post(
            "/admin/generations/webhookdelivery/",
            {"action": "redeliver", "_selected_action": [delivery.id]},
        )
        assert response.status_code == 302
        delivery.refresh_from_db()
        assert delivery.status == "pending"
        webhook_deliver(delivery.id)
    assert len(receiver.received) == 2
    delivery.refresh_from_db()
    assert delivery.status == "succeeded" and delivery.attempts == 2
