from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import CreditGrant
from billing.services import account_get_or_create, credits_grant
from hub.infra.timefmt import iso_z
from tests.factories import bearer, make_key, make_user

pytestmark = pytest.mark.django_db


def test_reports_balance_account_type_and_no_expiration(api, customer):
    _, _, auth = customer
    response = api.get("/api/v1/credits", **auth)
    assert response.status_code == 200
    assert response.json() == {"credits": 120, "account_type": "PRO", "next_expiration": None}


def test_reports_soonest_expiring_credits(api):
    user = make_user(credits=10)
    account = account_get_or_create(user=user)
    soon = timezone.now() + timedelta(days=3)
    credits_grant(account=account, amount=30, expires_at=soon)
    credits_grant(account=account, amount=5, expires_at=soon)
    credits_grant(account=account, amount=50, expires_at=soon + timedelta(days=30))
    body = api.get("/api/v1/credits", **bearer(make_key(user))).json()
    assert body["credits"] == 95
    assert body["next_expiration"] == {"credits": 35, "expires_at": iso_z(soon)}


def test_expired_credits_are_not_counted(api):
    user = make_user(credits=10)
    account = account_get_or_create(user=user)
    grant = credits_grant(account=account, amount=40, expires_at=timezone.now() + timedelta(days=1))
    CreditGrant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    body = api.get("/api/v1/credits", **bearer(make_key(user))).json()
    assert body["credits"] == 10
    assert body["next_expiration"] is None
    assert account.ledger.filter(kind="expire", amount=-40).count() == 1


def test_shows_only_the_key_owners_balance(api):
    rich, poor = make_user(credits=500), make_user(credits=3)
    assert api.get("/api/v1/credits", **bearer(make_key(poor))).json()["credits"] == 3
    assert api.get("/api/v1/credits", **bearer(make_key(rich))).json()["credits"] == 500
