"""Operators set a key's limits and the defaults of each account type in the admin."""

import pytest
from django.contrib.admin.utils import quote

from apikeys.models import ApiKey
from apikeys.services import api_key_create
from billing.models import AccountTypeLimits
from tests.bounds import REFUSED, assert_form_refused, refused_input
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_operator_sets_and_clears_a_keys_limits(console):
    key, raw = api_key_create(owner=make_user(), name="ci")
    url = f"/admin/apikeys/apikey/{quote(key.pk)}/change/"
    page = console.get(url).content.decode()
    assert "Images per minute" in page and key.digest not in page and raw not in page
    limits = {"allowed_models": "gpt-image-2, gpt-image-1", "images_per_minute": "10", "concurrency": "3"}
    assert console.post(url, {**limits, "monthly_credits": ""}).status_code == 302
    key.refresh_from_db()
    assert (key.allowed_models, key.images_per_minute, key.concurrency, key.monthly_credits) == (
        ["gpt-image-2", "gpt-image-1"],
        10,
        3,
        None,
    )
    assert "gpt-image-2, gpt-image-1" in console.get(url).content.decode()
    empty = {"allowed_models": "", "images_per_minute": "", "concurrency": "", "monthly_credits": "500"}
    assert console.post(url, empty).status_code == 302
    key = ApiKey.objects.get(pk=key.pk)
    assert (key.allowed_models, key.images_per_minute, key.monthly_credits, key.name) == (None, None, 500, "ci")


def test_operator_sets_the_defaults_of_an_account_type(console):
    assert console.get("/admin/billing/accounttypelimits/").status_code == 200
    response = console.post(
        "/admin/billing/accounttypelimits/add/",
        {
            "account_type": "FREE",
            "allowed_models": "",
            "images_per_minute": "5",
            "concurrency": "1",
            "monthly_credits": "",
            "turn_weight": "3",
        },
    )
    assert response.status_code == 302
    free = AccountTypeLimits.objects.get(account_type="FREE")
    assert (free.allowed_models, free.images_per_minute, free.concurrency, free.monthly_credits) == (None, 5, 1, None)
    assert free.turn_weight == 3  # its accounts' share of the upstreams' turns (generations.fair)


LIMITS = ["images_per_minute", "concurrency", "monthly_credits"]
NO_LIMITS = {"allowed_models": "", "images_per_minute": "", "concurrency": "", "monthly_credits": ""}


@pytest.mark.parametrize("kind", REFUSED)
@pytest.mark.parametrize("field", LIMITS)
def test_a_keys_limit_its_column_cannot_hold_is_a_form_error(console, field, kind):
    key, _ = api_key_create(owner=make_user(), name="ci")
    text = refused_input(kind, ApiKey, field)
    response = console.post(f"/admin/apikeys/apikey/{quote(key.pk)}/change/", {**NO_LIMITS, field: text})
    assert_form_refused(response, field)
    key.refresh_from_db()
    assert (key.images_per_minute, key.concurrency, key.monthly_credits) == (None, None, None)


@pytest.mark.parametrize("kind", REFUSED)
@pytest.mark.parametrize("field", LIMITS)
def test_an_account_types_limit_its_column_cannot_hold_is_a_form_error(console, field, kind):
    text = refused_input(kind, AccountTypeLimits, field)
    response = console.post("/admin/billing/accounttypelimits/add/", {**NO_LIMITS, "account_type": "FREE", field: text})
    assert_form_refused(response, field)
    assert not AccountTypeLimits.objects.exists()
