"""A signed-in user tries to reach another user's keys, credits and generations."""

import pytest

from apikeys.services import api_key_create
from billing.services import account_get_or_create, credits_grant
from tests.factories import bearer, make_generation, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def victim():
    user = make_user(email="victim@example.com")
    credits_grant(account=account_get_or_create(user=user), amount=777, reason="victim's grant")
    key, raw = api_key_create(owner=user, name="victim key")
    return user, key, raw, make_generation(user, prompt="victim's secret prompt")


def test_another_users_key_cannot_be_seen_or_revoked(member, victim, api):
    _, client = member
    _, key, raw, _ = victim
    assert key.display_prefix.encode() not in client.get("/account/keys/").content
    assert client.get(f"/account/keys/{key.pk}/revoke/").status_code == 404
    response = client.post(f"/account/keys/{key.pk}/revoke/")
    assert response.status_code == 404 and b"belongs to another account" in response.content
    key.refresh_from_db()
    assert key.revoked_at is None
    assert api.get("/api/v1/credits", **bearer(raw)).status_code == 200


def test_another_users_credits_never_show(member, victim):
    _, client = member
    for path in ("/account/", "/account/credits/"):
        content = client.get(path).content
        assert b"777" not in content and b"victim" not in content


def test_another_users_generations_cannot_be_listed_or_opened(member, victim):
    _, client = member
    generation = victim[3]
    assert generation.id.encode() not in client.get("/account/generations/").content
    response = client.get(f"/account/generations/{generation.id}/")
    assert response.status_code == 404 and b"victim" not in response.content
