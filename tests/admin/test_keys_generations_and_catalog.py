import re

import pytest
from django.contrib.admin.utils import quote

from apikeys.services import api_key_create
from billing.models import CreditAccount
from billing.services import account_get_or_create, credits_grant
from generations.models import Generation, ImageModel
from tests.accounts.pages import image_sources
from tests.bounds import REFUSED, assert_form_refused, column_max, refused_input
from tests.factories import bearer, make_generation, make_key, make_user

pytestmark = pytest.mark.django_db


def test_every_admin_page_opens(console):
    user = make_user(credits=20)
    api_key_create(owner=user, name="k")
    make_generation(user)
    index = console.get("/admin/")
    assert index.status_code == 200 and b"GPT Image Hub admin" in index.content
    for path in [
        "auth/user",
        "billing/creditaccount",
        "billing/creditgrant",
        "billing/ledgerentry",
        "billing/autotopup",
        "billing/balancecrossing",
        "generations/webhookdelivery",
        "apikeys/apikey",
        "generations/generation",
        "generations/imagemodel",
    ]:
        assert console.get(f"/admin/{path}/").status_code == 200, path
    assert console.get(f"/admin/auth/user/{user.pk}/change/").status_code == 200


def test_api_key_pages_never_show_the_digest_and_can_revoke(console, api):
    user = make_user()
    key, raw = api_key_create(owner=user, name="suspicious")
    for path in ["/admin/apikeys/apikey/", f"/admin/apikeys/apikey/{quote(key.pk)}/change/"]:
        content = console.get(path).content.decode()
        assert key.display_prefix in content and key.digest not in content and raw not in content
    response = console.post("/admin/apikeys/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert api.get("/api/v1/credits", **bearer(raw)).json()["error"]["code"] == "invalidApiKey"
    assert console.get(f"/admin/apikeys/apikey/{quote(key.pk)}/delete/").status_code == 403


def test_a_generation_shows_its_status_refund_and_images(console):
    user = make_user()
    credits_grant(account=account_get_or_create(user=user), amount=20)
    generation = make_generation(user, n=2, delivered=1)
    listing = console.get("/admin/generations/generation/?status__exact=succeeded").content.decode()
    assert generation.id in listing
    content = console.get(f"/admin/generations/generation/{quote(generation.id)}/change/").content.decode()
    key = generation.images.get().storage_key
    assert [src for src in image_sources(content) if key in src] != []
    assert "Refund +2 (refund: 1 of 2 images not delivered)" in content and "Charge -4" in content
    # Its history, read-only: no field of it to edit, no box to delete it.
    assert re.findall(r'<td class="field-kind">\s*<p>(.*?)</p>', content) == [
        "queued",
        "claimed",
        "succeeded",
        "refunded",
    ]
    assert 'name="events-0-kind"' not in content and 'name="events-0-DELETE"' not in content


def test_disabling_a_model_takes_it_off_the_api(console, api):
    response = console.post(
        "/admin/generations/imagemodel/", {"action": "disable", "_selected_action": ["gpt-image-2"]}
    )
    assert response.status_code == 302
    assert api.get("/api/v1/models").json()["data"] == []
    console.post("/admin/generations/imagemodel/", {"action": "enable", "_selected_action": ["gpt-image-2"]})
    assert [m["id"] for m in api.get("/api/v1/models").json()["data"]] == ["gpt-image-2"]


def _model_form(**changes) -> dict:
    model = ImageModel.objects.get(pk="gpt-image-2")
    data = {
        "provider": model.provider,
        "backend": model.backend,
        "upstream_model": model.upstream_model,
        "owned_by": model.owned_by,
        "created": model.created,
        "sizes": '["auto", "1024x1024", "1536x1024"]',
        "qualities": '["low", "high"]',
        "prices": '{"1K": {"low": 3, "high": 9}}',
        "reference_image_limit": 8,
        "enabled": "on",
        "sort_order": 0,
    }
    return {**data, **changes}


def test_prices_and_limits_can_be_edited(console, api):
    response = console.post("/admin/generations/imagemodel/gpt-image-2/change/", _model_form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    (model,) = api.get("/api/v1/models").json()["data"]
    assert model["credits_per_image"] == {"low": 3, "high": 9} and model["reference_image_limit"] == 8


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"prices": '{"1K": {"low": 3}}'}, "1K/high"),
        ({"sizes": '["1024x1024", "2048x2048"]'}, "2K/low"),
        ({"sizes": '["big"]'}, "WIDTHxHEIGHT"),
        ({"prices": '{"1K": {"low": 0, "high": 9}}'}, "1K/low"),
    ],
)
def test_a_catalog_row_without_a_price_for_every_size_and_quality_is_refused(console, changes, error):
    response = console.post("/admin/generations/imagemodel/gpt-image-2/change/", _model_form(**changes))
    assert response.status_code == 200 and error in response.content.decode()
    assert ImageModel.objects.get(pk="gpt-image-2").prices["1K"]["low"] == 2


def test_the_options_a_model_offers_are_edited_in_the_catalog(console, api):
    options = '{"background": ["opaque"], "output_format": ["png", "webp"], "user": true}'
    response = console.post("/admin/generations/imagemodel/gpt-image-2/change/", _model_form(options=options))
    assert response.status_code == 302, response.context["adminform"].form.errors
    (model,) = api.get("/api/v1/models").json()["data"]
    assert model["options"] == {"background": ["opaque"], "output_format": ["png", "webp"], "user": True}


@pytest.mark.parametrize(
    "options, error",
    [
        ('{"style": ["vivid"]}', "Unknown option &#x27;style&#x27;"),
        ('{"background": ["clear"]}', "background: a list of some of auto, opaque, transparent"),
        ('{"user": ["a"]}', "user: true, false."),
        ('["background"]', "An object such as"),
    ],
)
def test_options_the_api_does_not_know_are_refused_in_the_catalog(console, options, error):
    response = console.post("/admin/generations/imagemodel/gpt-image-2/change/", _model_form(options=options))
    assert response.status_code == 200 and error in response.content.decode()
    assert ImageModel.objects.get(pk="gpt-image-2").options["background"] == ["auto", "opaque", "transparent"]


@pytest.mark.parametrize("kind", REFUSED)
@pytest.mark.parametrize("field", ["reference_image_limit", "sort_order", "created"])
def test_a_catalog_number_its_column_cannot_hold_is_a_form_error(console, field, kind):
    text = refused_input(kind, ImageModel, field)
    response = console.post("/admin/generations/imagemodel/gpt-image-2/change/", _model_form(**{field: text}))
    assert_form_refused(response, field)
    model = ImageModel.objects.get(pk="gpt-image-2")
    assert (model.reference_image_limit, model.sort_order, model.prices["1K"]["low"]) == (16, 0, 2)


@pytest.mark.parametrize("kind", REFUSED)
def test_a_sort_order_typed_in_the_list_its_column_cannot_hold_is_a_form_error(console, kind):
    row = {
        "form-0-id": "gpt-image-2",
        "form-0-enabled": "on",
        "form-0-sort_order": refused_input(kind, ImageModel, "sort_order"),
    }
    response = console.post(
        "/admin/generations/imagemodel/", {"form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "_save": "Save", **row}
    )
    assert response.status_code == 200 and "sort_order" in response.context["cl"].formset.errors[0]
    assert ImageModel.objects.get(pk="gpt-image-2").sort_order == 0


@pytest.mark.parametrize("kind", ["column max + 1", "2**63", "10**30"])
def test_a_price_whose_four_images_no_charge_could_hold_is_a_form_error(console, api, kind):
    """n is at most 4: a price whose 4 images overflow a generation's credits column made
    every request at that quality a 500."""
    most = column_max(Generation, "credits_requested") // 4
    price = str(most + 1) if kind == "column max + 1" else refused_input(kind, Generation, "credits_requested")
    url = "/admin/generations/imagemodel/gpt-image-2/change/"
    response = console.post(url, _model_form(prices=f'{{"1K": {{"low": {price}, "high": 9}}}}'))
    assert_form_refused(response, "prices")
    assert f"at most {most}" in response.content.decode()
    assert ImageModel.objects.get(pk="gpt-image-2").prices["1K"]["low"] == 2
    assert console.post(url, _model_form(prices=f'{{"1K": {{"low": {most}, "high": 9}}}}')).status_code == 302
    body = {"model": "gpt-image-2", "prompt": "p", "size": "1024x1024", "quality": "low", "n": 4, "async": True}
    auth = bearer(make_key(make_user(credits=4 * most)))
    response = api.post("/api/v1/images/generations", body, format="json", **auth)
    assert response.status_code == 202 and response.json()["usage"]["credits_requested"] == 4 * most


def test_users_show_their_account_type_and_balance_and_new_ones_get_an_account(console):
    make_user(credits=12, account_type="PRO", email="pro@example.com")
    content = console.get("/admin/auth/user/").content.decode()
    assert "pro@example.com" in content and "PRO" in content and ">12<" in content
    response = console.post(
        "/admin/auth/user/add/",
        {
            "username": "new@example.com",
            "password1": "a long passphrase 1",
            "password2": "a long passphrase 1",
            "usable_password": "true",
            "credit_account-TOTAL_FORMS": "0",
            "credit_account-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert CreditAccount.objects.filter(user__username="new@example.com", balance=0).exists()
