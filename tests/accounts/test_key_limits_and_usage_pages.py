"""The API keys page: each key's effective limits, a limits form (owners only tighten their
plan), and the usage table per key and day — another user's keys never appear."""

import re

import pytest

from apikeys.models import ApiKey
from apikeys.services import api_key_create
from billing.models import AccountTypeLimits
from billing.services import account_get_or_create, credits_grant
from generations.services import generation_create
from tests.bounds import REFUSED, refused_input
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def _generate(user, key, n: int):
    generation_create(
        owner=user,
        api_key=key,
        model_id="gpt-image-2",
        prompt="page",
        size="1024x1024",
        quality="low",
        n=n,
        is_async=True,
        references=[],
    )


def test_owner_sets_and_clears_a_keys_limits_within_the_plan(member):
    user, client = member
    AccountTypeLimits.objects.create(account_type="FREE", images_per_minute=20)
    key, _ = api_key_create(owner=user, name="ci")
    url = f"/account/keys/{key.pk}/limits/"
    form = client.get(url).content.decode()
    assert 'placeholder="plan: 20"' in form and "gpt-image-2" in form

    too_loose = client.post(url, {"images_per_minute": "50"})
    assert too_loose.status_code == 200 and "at most 20" in too_loose.content.decode()
    saved = client.post(url, {"allowed_models": ["gpt-image-2"], "images_per_minute": "5", "concurrency": "2"})
    assert saved.status_code == 302
    key.refresh_from_db()
    assert (key.allowed_models, key.images_per_minute, key.concurrency, key.monthly_credits) == (
        ["gpt-image-2"],
        5,
        2,
        None,
    )
    listing = client.get("/account/keys/").content.decode()
    assert "gpt-image-2 ·" in listing and "5/min" in listing and "2 at once" in listing

    assert client.post(url, {}).status_code == 302  # all blank: back to the plan's defaults
    key.refresh_from_db()
    assert (key.allowed_models, key.images_per_minute, key.concurrency) == (None, None, None)
    assert "20/min" in client.get("/account/keys/").content.decode()


def test_what_an_operator_granted_beyond_the_plan_survives_saving_the_form(member):
    user, client = member
    AccountTypeLimits.objects.create(account_type="FREE", images_per_minute=20)
    key, _ = api_key_create(owner=user, name="ci")
    ApiKey.objects.filter(pk=key.pk).update(images_per_minute=100)
    url = f"/account/keys/{key.pk}/limits/"
    assert client.post(url, {"images_per_minute": "100", "concurrency": "1"}).status_code == 302
    assert "at most 100" in client.post(url, {"images_per_minute": "101"}).content.decode()
    key.refresh_from_db()
    assert (key.images_per_minute, key.concurrency) == (100, 1)


@pytest.mark.parametrize("kind", REFUSED)
@pytest.mark.parametrize("field", ["images_per_minute", "concurrency", "monthly_credits"])
def test_a_limit_the_column_cannot_hold_is_a_form_error_and_nothing_is_saved(member, field, kind):
    user, client = member
    key, _ = api_key_create(owner=user, name="ci")
    text = refused_input(kind, ApiKey, field)
    response = client.post(f"/account/keys/{key.pk}/limits/", {field: text, "concurrency": "2"} | {field: text})
    assert response.status_code == 200
    assert response.context["form"].errors.keys() == {field}
    key.refresh_from_db()
    assert (key.images_per_minute, key.concurrency, key.monthly_credits) == (None, None, None)


def test_another_users_key_limits_page_is_not_found(member):
    _, client = member
    other_key, _ = api_key_create(owner=make_user(), name="theirs")
    assert client.get(f"/account/keys/{other_key.pk}/limits/").status_code == 404
    assert client.post(f"/account/keys/{other_key.pk}/limits/", {"concurrency": "1"}).status_code == 404
    assert ApiKey.objects.get(pk=other_key.pk).concurrency is None


def test_usage_table_shows_each_of_the_owners_keys_per_day(member):
    user, client = member
    credits_grant(account=account_get_or_create(user=user), amount=50)
    ci, _ = api_key_create(owner=user, name="ci")
    _generate(user, ci, 3)
    stranger = make_user(credits=50)
    theirs, _ = api_key_create(owner=stranger, name="stranger-key")
    _generate(stranger, theirs, 2)

    page = client.get("/account/keys/").content.decode()
    assert re.search(r"<title>API Keys\b[^<]*</title>", page) and page.count('id="usage"') == 1
    usage = page[page.index('id="usage"') :]
    assert f'data-key-id="{ci.pk}"' in usage and "<td>3</td>" in usage and "<td>6</td>" in usage
    assert theirs.pk not in usage and "stranger-key" not in page
