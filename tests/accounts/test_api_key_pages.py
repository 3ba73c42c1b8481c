import re
from datetime import timedelta

import pytest
from django.utils import timezone

from apikeys.models import ApiKey
from apikeys.services import api_key_create
from tests.factories import bearer

pytestmark = pytest.mark.django_db


def _raw_key(content: bytes) -> str:
    (raw,) = set(re.findall(rb"gih_live_[A-Za-z0-9]{32}", content))
    return raw.decode()


@pytest.mark.slow
def test_a_new_key_is_shown_once_and_works_against_the_api(member, api):
    user, client = member
    response = client.post("/account/keys/", {"name": "ci runner", "expires_in": ""})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    raw = _raw_key(response.content)
    assert b"only time the key is shown" in response.content
    key = ApiKey.objects.get(owner=user)
    assert (key.name, key.expires_at, key.display_prefix) == ("ci runner", None, raw[:13])
    assert api.get("/api/v1/credits", **bearer(raw)).json()["credits"] == 0
    listing = client.get("/account/keys/").content
    assert raw.encode() not in listing and raw[13:].encode() not in listing
    assert key.display_prefix.encode() in listing and b"ci runner" in listing


@pytest.mark.slow
def test_a_key_can_expire(member):
    user, client = member
    client.post("/account/keys/", {"name": "temp", "expires_in": "30"})
    key = ApiKey.objects.get(owner=user)
    assert abs(key.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "data", [{"name": "", "expires_in": ""}, {"name": "x", "expires_in": "12"}, {"name": "x" * 101}]
)
def test_an_invalid_key_form_creates_nothing(member, data):
    user, client = member
    response = client.post("/account/keys/", data)
    assert response.status_code == 200 and b"gih_live_" not in response.content
    assert not ApiKey.objects.filter(owner=user).exists()


def test_the_list_shows_name_prefix_dates_and_status_but_never_the_digest(member):
    user, client = member
    active, _ = api_key_create(owner=user, name="live one")
    expired, _ = api_key_create(owner=user, name="old one", expires_at=timezone.now() + timedelta(days=1))
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    content = client.get("/account/keys/").content.decode()
    for key in (active, expired):
        assert key.display_prefix in content and key.digest not in content
    assert "live one" in content and "old one" in content
    assert 'badge-active">active' in content and 'badge-expired">expired' in content
    assert content.count("Revoke</a>") == 1


def test_revoking_asks_for_confirmation_then_the_key_stops_working(member, api):
    user, client = member
    key, raw = api_key_create(owner=user, name="to revoke")
    confirm = client.get(f"/account/keys/{key.pk}/revoke/")
    assert confirm.status_code == 200 and b"Revoke this key?" in confirm.content
    key.refresh_from_db()
    assert key.revoked_at is None
    response = client.post(f"/account/keys/{key.pk}/revoke/")
    assert response.status_code == 302 and response["Location"] == "/account/keys/"
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert api.get("/api/v1/credits", **bearer(raw)).json()["error"]["code"] == "invalidApiKey"
    assert b'badge-revoked">revoked' in client.get("/account/keys/").content
