import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from billing.models import CreditAccount
from tests.factories import make_user

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery"


def _sign_up(client, email="New.User@Example.com", password="a-long enough passphrase", again=None):
    return client.post("/account/signup/", {"email": email, "password1": password, "password2": again or password})


def test_sign_up_creates_a_user_with_an_empty_credit_account_who_signs_in(client):
    response = _sign_up(client)
    assert response.status_code == 302 and response["Location"] == "/account/signup/sent/"
    user = get_user_model().objects.get()
    assert (user.username, user.email) == ("new.user@example.com", "new.user@example.com")
    assert CreditAccount.objects.get(user=user).balance == 0
    sent = client.get("/account/signup/sent/")
    assert b"Check your inbox" in sent.content and b"new.user@example.com" in sent.content
    (email,) = mail.outbox
    assert email.to == ["new.user@example.com"] and "/account/verify-email/" in email.body
    signed_in = client.post(
        "/account/login/", {"username": "new.user@example.com", "password": "a-long enough passphrase"}
    )
    assert signed_in.status_code == 302
    home = client.get("/account/")
    assert home.status_code == 200 and b"new.user@example.com" in home.content


def test_sign_up_with_a_taken_email_in_any_case_creates_nothing(client):
    make_user(email="taken@example.com")
    response = _sign_up(client, email="Taken@Example.com")
    assert response.status_code == 302 and response["Location"] == "/account/signup/sent/"
    assert get_user_model().objects.count() == 1
    assert get_user_model().objects.get().check_password(PASSWORD)


@pytest.mark.parametrize(
    "password, again, message",
    [
        ("short", None, b"too short"),
        ("a-long enough passphrase", "something else entirely", b"differ"),
        ("password123", None, b"too common"),
    ],
)
def test_sign_up_refuses_weak_or_mismatched_passwords(client, password, again, message):
    response = _sign_up(client, password=password, again=again)
    assert response.status_code == 200 and message in response.content
    assert not get_user_model().objects.exists()


def test_sign_in_with_the_email_in_any_case(client):
    make_user(email="alice@example.com")
    response = client.post("/account/login/", {"username": "Alice@Example.com ", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/account/"
    assert client.get("/account/").status_code == 200


def test_sign_in_with_a_wrong_password_fails(client):
    make_user(email="alice@example.com")
    response = client.post("/account/login/", {"username": "alice@example.com", "password": "wrong"})
    assert response.status_code == 200 and b"correct" in response.content
    assert client.get("/account/").status_code == 302


def test_sign_out_ends_the_session(client):
    client.force_login(make_user())
    assert client.post("/account/logout/").status_code == 302
    assert client.get("/account/").status_code == 302


@pytest.mark.parametrize(
    "path", ["/account/", "/account/keys/", "/account/credits/", "/account/generations/", "/account/generations/gen_x/"]
)
def test_account_pages_send_strangers_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/account/login/?next=")


def test_the_root_leads_to_the_account_home(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/account/"


def test_password_reset_by_email_sets_a_new_password(client):
    make_user(email="alice@example.com")
    response = client.post("/account/password-reset/", {"email": "alice@example.com"})
    assert response.status_code == 302 and response["Location"] == "/account/password-reset/sent/"
    (email,) = mail.outbox
    assert email.to == ["alice@example.com"]
    link = re.search(r"http://testserver(/account/password-reset/\S+/)", email.body).group(1)
    form_url = client.get(link)["Location"]  # Django swaps the token for a session marker
    new = "another long passphrase"
    response = client.post(form_url, {"new_password1": new, "new_password2": new})
    assert response["Location"] == "/account/password-reset/complete/"
    assert client.post("/account/login/", {"username": "alice@example.com", "password": new}).status_code == 302


def test_password_reset_for_an_unknown_email_looks_the_same_and_sends_nothing(client):
    response = client.post("/account/password-reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302 and response["Location"] == "/account/password-reset/sent/"
    assert mail.outbox == []
