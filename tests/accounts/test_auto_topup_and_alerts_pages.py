"""The Billing page's Auto top-up and Alerts sections: turning auto top-up on through Stripe's
setup page, its states (waiting for a card, on, paused, off), and the low-balance threshold and
account webhook endpoint — bounded numbers, the webhook URL rules, CSRF."""

import pytest
from django.db import transaction
from django.test import Client

from billing.autotopup import autotopup_failed
from billing.models import AutoTopUp, CreditAccount
from billing.services import account_get_or_create
from generations.webhooks import account_webhook_url
from tests.billing.stripe_helpers import autotopup_on, deliver_all, make_pack
from tests.reconcile import assert_reconciled

pytestmark = pytest.mark.django_db

URL = "/account/billing/auto-top-up/"


def section(client, name: str, query: str = "") -> str:
    content = client.get(f"/account/billing/{query}").content.decode()
    return content.split(f'id="{name}"')[1].split("</section>")[0]


def test_turning_auto_top_up_on_saves_a_card_on_stripe_s_page_and_shows_it_on(
    member, fake_stripe, django_capture_on_commit_callbacks
):
    user, client = member
    pack = make_pack(name="Refill", credits=500, price_cents=900)
    page = section(client, "auto-top-up")
    assert "Off" in page and "Refill — 500 credits, 9.00 USD" in page and "Save a card and turn on" in page

    response = client.post(URL, {"pack": pack.id, "threshold": "100", "action": "card"})
    (session_id,) = fake_stripe.sessions
    assert response.status_code == 302 and response["Location"] == f"{fake_stripe.base_url}/pay/{session_id}"
    assert fake_stripe.sessions[session_id]["success_url"] == "http://testserver/account/billing/?card=saved"
    assert "Waiting for a card" in section(client, "auto-top-up")

    with django_capture_on_commit_callbacks(execute=True):
        deliver_all(fake_stripe, fake_stripe.save_card(session_id))
    page = section(client, "auto-top-up", "?card=saved")
    assert "Card saved with Stripe: auto top-up is on." in page
    assert "When a charge takes your balance under 100 credits" in page
    assert "we buy Refill (500 credits, 9.00 USD)" in page and "with visa •••• 4242" in page
    assert CreditAccount.objects.get(user=user).auto_topup_threshold == 100

    response = client.post(URL, {"pack": pack.id, "threshold": "250", "action": "save"})
    assert response.status_code == 302 and response["Location"] == "/account/billing/#auto-top-up"
    assert len(fake_stripe.sessions) == 1  # the saved card is kept
    assert "under 250 credits" in section(client, "auto-top-up")

    assert client.post(f"{URL}off/").status_code == 302
    assert "Off" in section(client, "auto-top-up")
    assert CreditAccount.objects.get(user=user).auto_topup_threshold is None
    assert_reconciled()


@pytest.mark.parametrize(
    ("field", "value"),
    [("threshold", "0"), ("threshold", "-5"), ("threshold", "ten"), ("threshold", "9" * 20), ("pack", "pack_nope")],
)
def test_a_bad_threshold_or_pack_is_a_form_error_not_a_change(member, fake_stripe, field, value):
    _, client = member
    data = {"pack": make_pack().id, "threshold": "100", field: value}
    response = client.post(URL, data)
    assert response.status_code == 200
    page = response.content.decode().split('id="auto-top-up"')[1].split("</section>")[0]
    assert "field-invalid" in page
    assert not AutoTopUp.objects.exists() and not fake_stripe.requests


def test_the_forms_take_a_post_from_a_signed_in_user_with_the_csrf_token(member, fake_stripe):
    user, _ = member
    pack = make_pack()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    for path in (URL, f"{URL}off/", f"{URL}resume/", "/account/billing/alerts/"):
        assert strict.post(path, {"pack": pack.id, "threshold": "5"}).status_code == 403, path
        assert strict.get(path).status_code == 405, path
        anonymous = Client().post(path)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/account/login/"), path
    assert not AutoTopUp.objects.exists()


def test_a_paused_auto_top_up_says_why_and_resumes(member, fake_stripe):
    user, client = member
    autotopup_on(fake_stripe, user, make_pack(), threshold=30)
    with transaction.atomic():
        for _ in range(2):
            autotopup_failed(account_id=account_get_or_create(user=user).pk, reason="Your card has expired.")
    page = section(client, "auto-top-up")
    assert "Paused" in page and "Your card has expired." in page and "Resume auto top-up" in page
    assert client.post(f"{URL}resume/").status_code == 302
    page = section(client, "auto-top-up")
    assert "Paused" not in page and "under 30 credits" in page


def test_without_stripe_settings_there_is_no_auto_top_up_but_alerts_remain(member, settings):
    settings.STRIPE_SECRET_KEY = settings.STRIPE_WEBHOOK_SECRET = ""
    _, client = member
    content = client.get("/account/billing/").content.decode()
    assert 'id="auto-top-up"' not in content and 'id="alerts"' in content
    assert client.post(URL, {"pack": make_pack().id, "threshold": "10"}).status_code == 404


def test_alerts_save_a_threshold_and_an_endpoint_held_to_the_webhook_rules(member, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    user, client = member
    saved = {"low_balance_threshold": "50", "webhook_url": "https://example.com/hooks/hub"}
    response = client.post("/account/billing/alerts/", saved)
    assert response.status_code == 302 and response["Location"] == "/account/billing/#alerts"
    assert CreditAccount.objects.get(user=user).low_balance_threshold == 50
    assert account_webhook_url(user=user) == "https://example.com/hooks/hub"
    page = section(client, "alerts")
    assert 'value="50"' in page and 'value="https://example.com/hooks/hub"' in page

    for refused, says in (
        ({"low_balance_threshold": "20", "webhook_url": "http://10.0.0.1/hook"}, "not a public unicast address"),
        ({"low_balance_threshold": "20", "webhook_url": "ftp://example.com/"}, "must be an http:// or https:// URL"),
        ({"low_balance_threshold": "0", "webhook_url": ""}, "greater than or equal to 1"),
        ({"low_balance_threshold": "9" * 20, "webhook_url": ""}, "less than or equal to"),
    ):
        response = client.post("/account/billing/alerts/", refused)
        assert response.status_code == 200 and says in response.content.decode(), refused
        assert CreditAccount.objects.get(user=user).low_balance_threshold == 50  # nothing saved
        assert account_webhook_url(user=user) == "https://example.com/hooks/hub"

    client.post("/account/billing/alerts/", {"low_balance_threshold": "", "webhook_url": ""})
    assert CreditAccount.objects.get(user=user).low_balance_threshold is None
    assert account_webhook_url(user=user) == ""
