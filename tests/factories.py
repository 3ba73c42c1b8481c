"""Test data built through the real services, so tests see what users would."""

from itertools import count

from django.contrib.auth import get_user_model

from apikeys.services import api_key_create
from billing.models import GrantSource
from billing.services import account_get_or_create, credits_grant

_emails = count(1)


def make_user(*, credits: int = 0, expires_at=None, account_type: str | None = None, email: str | None = None):
    email = email or f"user{next(_emails)}@example.com"
    user = get_user_model().objects.create_user(username=email, email=email, password="correct horse battery")
    account = account_get_or_create(user=user)
    if account_type:
        account.account_type = account_type
        account.save(update_fields=["account_type"])
    if credits:
        credits_grant(account=account, amount=credits, source=GrantSource.PURCHASE, expires_at=expires_at)
    return user


def make_key(user, **kwargs) -> str:
    return api_key_create(owner=user, **kwargs)[1]


def bearer(raw_key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}
