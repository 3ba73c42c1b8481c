"""Sign-up abuse: throttled per client address, never reveals a registered email, and (when
required) a new account's keys work only once its email address is confirmed."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

import accounts.services
from apikeys.services import api_key_create
from tests.factories import bearer, make_key, make_user

pytestmark = pytest.mark.django_db
PASSWORD = "a-long enough passphrase"


def _sign_up(client, email: str, **extra):
    data = {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    return client.post("/account/signup/", data, **extra)


def _link(message) -> str:
    return re.search(r"http://testserver(/account/verify-email/\S+/)", message.body).group(1)


def test_sign_ups_are_throttled_per_client_address(settings):
    settings.SIGNUPS_PER_IP_PER_HOUR = 3
    client = Client()
    for i in range(3):
        assert _sign_up(client, f"user{i}@example.com", REMOTE_ADDR="203.0.113.7").status_code == 302
    refused = _sign_up(client, "user3@example.com", REMOTE_ADDR="203.0.113.7")
    assert refused.status_code == 429 and b"Too many accounts" in refused.content
    assert not get_user_model().objects.filter(email="user3@example.com").exists()
    assert _sign_up(client, "user3@example.com", REMOTE_ADDR="198.51.100.1").status_code == 302


def test_behind_the_tls_proxy_the_address_the_proxy_saw_is_throttled(settings):
    settings.SIGNUPS_PER_IP_PER_HOUR = 1
    settings.BEHIND_TLS_PROXY = True
    client = Client()
    first = _sign_up(client, "a@example.com", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.7")
    assert first.status_code == 302
    # The client forges what it can (the left entries); the proxy appended the real address.
    again = _sign_up(client, "b@example.com", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="2.2.2.2, 203.0.113.7")
    assert again.status_code == 429
    other = _sign_up(client, "c@example.com", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert other.status_code == 302


def test_a_taken_email_gets_the_same_answer_as_a_new_one():
    make_user(email="taken@example.com")
    answers = {}
    for email in ("taken@example.com", "fresh@example.com"):
        client = Client()
        response = _sign_up(client, email)
        page = client.get(response["Location"])
        answers[email] = (
            response.status_code,
            response["Location"],
            page.status_code,
            page.content.replace(email.encode(), b"ADDRESS"),
        )
    assert answers["taken@example.com"] == answers["fresh@example.com"]
    # Only the inbox tells: the owner of the taken address hears of it, the new one gets a link.
    taken, fresh = mail.outbox
    assert taken.to == ["taken@example.com"] and "already has one" in taken.body and "verify-email" not in taken.body
    assert fresh.to == ["fresh@example.com"] and "/account/verify-email/" in fresh.body
    assert get_user_model().objects.filter(email="taken@example.com").get().check_password("correct horse battery")


def test_with_verification_required_a_new_accounts_keys_answer_401_until_the_link_is_opened(api, settings):
    settings.REQUIRE_EMAIL_VERIFICATION = True
    _sign_up(Client(), "new@example.com")
    (message,) = mail.outbox
    assert "Your API keys work once the address is confirmed" in message.body
    user = get_user_model().objects.get(email="new@example.com")
    _, raw = api_key_create(owner=user, name="laptop")

    refused = api.get("/api/v1/credits", **bearer(raw))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "emailNotVerified"
    assert "Confirm your email address" in refused.json()["error"]["message"]

    confirmed = Client().get(_link(message))
    assert confirmed.status_code == 200 and b"Email confirmed" in confirmed.content
    assert api.get("/api/v1/credits", **bearer(raw)).status_code == 200


def test_without_verification_required_keys_work_before_the_link_is_opened(api, settings):
    settings.REQUIRE_EMAIL_VERIFICATION = False
    _sign_up(Client(), "new@example.com")
    _, raw = api_key_create(owner=get_user_model().objects.get(email="new@example.com"))
    assert api.get("/api/v1/credits", **bearer(raw)).status_code == 200


def test_operators_users_need_no_confirmation(api, settings):
    settings.REQUIRE_EMAIL_VERIFICATION = True
    assert api.get("/api/v1/credits", **bearer(make_key(make_user()))).status_code == 200


def test_a_tampered_or_expired_link_confirms_nothing(api, settings, monkeypatch):
    settings.REQUIRE_EMAIL_VERIFICATION = True
    _sign_up(Client(), "new@example.com")
    link = _link(mail.outbox[0])
    _, raw = api_key_create(owner=get_user_model().objects.get(email="new@example.com"))

    tampered = Client().get(link[:-3] + ("x/" if link[-2] != "x" else "y/"))
    assert tampered.status_code == 400 and b"not valid or has expired" in tampered.content
    monkeypatch.setattr(accounts.services, "EMAIL_VERIFICATION_MAX_AGE_SECONDS", -1)
    assert Client().get(link).status_code == 400
    assert api.get("/api/v1/credits", **bearer(raw)).json()["error"]["code"] == "emailNotVerified"


def test_an_unconfirmed_user_is_offered_a_new_link(settings):
    settings.REQUIRE_EMAIL_VERIFICATION = True
    client = Client()
    _sign_up(client, "new@example.com")
    client.post("/account/login/", {"username": "new@example.com", "password": PASSWORD})
    home = client.get("/account/")
    assert b"Send a new link" in home.content
    assert client.post("/account/verify-email/resend/").status_code == 302
    first, second = mail.outbox
    assert first.to == second.to == ["new@example.com"]
    assert Client().get(_link(second)).status_code == 200
    assert b"Send a new link" not in client.get("/account/").content


def test_signing_up_again_while_unconfirmed_sends_a_new_link():
    _sign_up(Client(), "new@example.com")
    _sign_up(Client(), "new@example.com")
    first, second = mail.outbox
    assert second.to == ["new@example.com"] and "/account/verify-email/" in second.body
    assert get_user_model().objects.filter(email="new@example.com").count() == 1
