import os
import subprocess
import sys

import pytest
from django.test import Client

from accounts.services import user_create
from apikeys.services import api_key_create
from tests.conftest import ROOT
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def strict():
    return Client(enforce_csrf_checks=True)


@pytest.mark.parametrize(
    "path, data",
    [
        (
            "/account/signup/",
            {"email": "x@example.com", "password1": "a long passphrase", "password2": "a long passphrase"},
        ),
        ("/account/login/", {"username": "user@example.com", "password": "correct horse battery"}),
        ("/account/password-reset/", {"email": "user@example.com"}),
    ],
)
def test_public_forms_refuse_a_post_without_the_csrf_token(strict, path, data):
    make_user(email="user@example.com")
    assert strict.get(path).content.count(b'name="csrfmiddlewaretoken"') == 1
    assert strict.post(path, data).status_code == 403


def test_signed_in_forms_refuse_a_post_without_the_csrf_token(strict):
    user = make_user()
    key, _ = api_key_create(owner=user, name="k")
    strict.force_login(user)
    assert b'name="csrfmiddlewaretoken"' in strict.get("/account/keys/").content
    assert strict.post("/account/keys/", {"name": "forged"}).status_code == 403
    assert strict.post(f"/account/keys/{key.pk}/revoke/").status_code == 403
    assert strict.post("/account/logout/").status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None and user.api_keys.count() == 1


@pytest.mark.slow
def test_production_settings_mark_the_session_and_csrf_cookies_secure():
    probe = (
        "import django; django.setup(); from django.conf import settings as s;"
        " print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY)"
    )
    env = {**os.environ, "HUB_SECURE_COOKIES": "1", "DJANGO_SETTINGS_MODULE": "hub.settings"}
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["True", "True", "True"]


def test_a_secure_session_cookie_is_sent_with_the_secure_flag(client, settings):
    settings.SESSION_COOKIE_SECURE = True
    make_user(email="user@example.com")
    response = client.post("/account/login/", {"username": "user@example.com", "password": "correct horse battery"})
    assert response.status_code == 302
    assert response.cookies["sessionid"]["secure"] and response.cookies["sessionid"]["httponly"]


TOO_MANY = {f"f{i}": "x" for i in range(1001)}  # Django's DATA_UPLOAD_MAX_NUMBER_FIELDS is 1,000


def _bad_request_page(response):
    """What a page answers for a request Django refuses to read: once a JSON body on a page."""
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert b"<h1>Bad request</h1>" in response.content
    assert response["x-should-retry"] == "false"


@pytest.mark.parametrize("path", ["/account/login/", "/account/signup/", "/admin/login/"])
def test_too_many_form_fields_on_a_public_page_is_a_400_page(strict, path):
    strict.get(path)  # the CSRF cookie: the middleware reads the form before any view
    token = strict.cookies["csrftoken"].value
    _bad_request_page(strict.post(path, {**TOO_MANY, "csrfmiddlewaretoken": token}))


def test_too_many_query_parameters_on_a_page_is_a_400_page(client):
    """The pages that read their query string (`next`, `page`, the admin's filters)."""
    for path in ("/account/login/", "/admin/login/"):
        _bad_request_page(client.get(path, TOO_MANY))
    client.force_login(user_create(email="ops@example.com", password="ops password 1", is_staff=True))
    for path in ("/account/credits/", "/account/generations/", "/admin/billing/ledgerentry/"):
        _bad_request_page(client.get(path, TOO_MANY))
