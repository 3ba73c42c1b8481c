import os
import subprocess
import sys

import pytest
from django.test import Client

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
