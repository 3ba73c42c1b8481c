from datetime import timedelta

import pytest
from django.utils import timezone

from apikeys.models import ApiKey
from apikeys.services import api_key_create, api_key_revoke
from tests.factories import bearer, make_user

pytestmark = pytest.mark.django_db


def _error(response):
    return response.status_code, response.json()["error"]["code"]


def test_rejects_missing_key(api):
    response = api.get("/api/v1/credits")
    assert _error(response) == (401, "missingApiKey")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer gih_live_" + "x" * 32, "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer ", "gih_live_" + "a" * 32],
)
def test_rejects_unknown_or_malformed_key(api, header):
    assert _error(api.get("/api/v1/credits", HTTP_AUTHORIZATION=header)) == (401, "invalidApiKey")


def test_rejects_revoked_key(api):
    user = make_user()
    key, raw = api_key_create(owner=user)
    assert api.get("/api/v1/credits", **bearer(raw)).status_code == 200
    api_key_revoke(key=key)
    assert _error(api.get("/api/v1/credits", **bearer(raw))) == (401, "invalidApiKey")


def test_rejects_expired_key(api):
    user = make_user()
    key, raw = api_key_create(owner=user, expires_at=timezone.now() + timedelta(days=1))
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _error(api.get("/api/v1/credits", **bearer(raw))) == (401, "expiredApiKey")


def test_rejects_key_of_deactivated_user(api):
    user = make_user()
    _, raw = api_key_create(owner=user)
    user.is_active = False
    user.save()
    assert _error(api.get("/api/v1/credits", **bearer(raw))) == (401, "invalidApiKey")


def test_key_format_and_hash_only_storage():
    user = make_user()
    key, raw = api_key_create(owner=user, name="ci")
    assert raw.startswith("gih_live_") and len(raw) == len("gih_live_") + 32
    assert raw[9:].isalnum()
    stored = ApiKey.objects.get(pk=key.pk)
    assert raw not in {stored.digest, stored.display_prefix, stored.name, stored.id}
    assert stored.display_prefix == raw[:13]
    assert len(stored.digest) == 64


def test_keys_are_unique():
    user = make_user()
    raws = {api_key_create(owner=user)[1] for _ in range(50)}
    assert len(raws) == 50


def test_records_last_used_at_most_once_a_minute(api):
    user = make_user()
    key, raw = api_key_create(owner=user)
    assert key.last_used_at is None
    api.get("/api/v1/credits", **bearer(raw))
    first = ApiKey.objects.get(pk=key.pk).last_used_at
    assert first is not None
    api.get("/api/v1/credits", **bearer(raw))
    assert ApiKey.objects.get(pk=key.pk).last_used_at == first
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(minutes=2))
    api.get("/api/v1/credits", **bearer(raw))
    assert ApiKey.objects.get(pk=key.pk).last_used_at > first - timedelta(minutes=2)
