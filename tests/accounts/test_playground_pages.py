"""The playground page without a browser: who may use it, what it shows (the cost, the balance,
the catalog's prices), what a submit charges, the refusals it shows instead of a 5xx, and the
events stream its script watches with the session (tests/browser/test_playground.py: in Chromium)."""

import json
import re

import pytest
from django.test import Client

from billing.models import AccountTypeLimits
from billing.selectors import credits_summary_for_user
from generations.models import Generation
from tests.factories import create_generation, make_generation, make_user

pytestmark = pytest.mark.django_db
URL = "/account/playground/"
ASK = {"prompt": "A lighthouse at dawn", "model": "gpt-image-2", "size": "1024x1024", "quality": "low", "n": "3"}


def catalog_of(page: bytes) -> dict:
    found = re.search(rb'<script id="playground-catalog" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def cost_of(page: bytes) -> str:
    return re.search(rb'data-testid="cost">([^<]*)<', page).group(1).decode()


def test_signed_out_it_asks_to_sign_in(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/account/login/?next=/account/playground/")


def test_it_shows_the_balance_the_prices_and_the_cost_of_the_first_choice(client):
    user = make_user(credits=50)
    client.force_login(user)
    response = client.get(URL)
    assert response.status_code == 200
    page = response.content
    assert re.search(rb'data-testid="balance"[^>]*>50<', page)
    # the catalog's prices by size and quality, as the charge computes them (1K for every size)
    prices = catalog_of(page)["gpt-image-2"]["prices"]
    assert prices["1024x1024"] == {"auto": 8, "low": 2, "medium": 4, "high": 8}
    assert prices.keys() == {"auto", "1024x1024", "1536x1024", "1024x1536"}
    assert cost_of(page) == "8 credits"  # auto size, auto quality, one image
    assert b'<label for="id_prompt">Prompt</label>' in page
    assert b'src="/static/accounts/playground.js"' in page
    assert b'href="/account/playground/" aria-current="page">Playground</a>' in page


def test_a_submit_charges_like_the_api_and_shows_its_generation(client):
    user = make_user(credits=50)
    client.force_login(user)
    response = client.post(URL, ASK)
    assert response.status_code == 302
    generation = Generation.objects.get(owner=user)
    assert response["Location"] == f"{URL}?generation={generation.id}"
    assert (generation.prompt, generation.size, generation.quality, generation.n) == (
        "A lighthouse at dawn",
        "1024x1024",
        "low",
        3,
    )
    assert generation.api_key_id is None and generation.credits_requested == 6
    assert generation.partial_images == 2  # the page shows them sharpening (the events stream)
    assert credits_summary_for_user(user_id=user.pk).credits == 44

    page = client.get(response["Location"]).content
    assert f'data-events-url="/api/v1/generations/{generation.id}/events"'.encode() in page
    assert page.count(b'class="figure playground-slot"') == 3
    assert f'href="/account/generations/{generation.id}/"'.encode() in page
    assert re.search(rb'data-testid="balance"[^>]*>44<', page)
    assert cost_of(page) == "6 credits"  # the form keeps what was asked
    assert b'<option value="low" selected>' in page
    # and it is in the history
    assert generation.id.encode() in client.get("/account/generations/").content


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"prompt": "  "}, 400, b"This field is required."),
        ({"n": "5"}, 400, b"Select a valid choice. 5 is not one of the available choices."),
        ({"model": "gpt-image-1", "size": "1024x1536"}, 400, b"Unsupported size &#x27;1024x1536&#x27; for gpt-image-1"),
        ({"quality": "high", "n": "4"}, 402, b"Not enough credits: 32 needed, 10 available"),
    ],
)
def test_a_refused_submit_shows_why_on_the_form_and_charges_nothing(client, openai_model, change, status, message):
    user = make_user(credits=10)
    client.force_login(user)
    response = client.post(URL, {**ASK, **change})
    assert response.status_code == status
    assert message in response.content
    assert b'id="playground-form"' in response.content
    assert not Generation.objects.filter(owner=user).exists()
    assert credits_summary_for_user(user_id=user.pk).credits == 10


def test_a_post_without_the_csrf_token_is_refused():
    user = make_user(credits=50)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert b'name="csrfmiddlewaretoken"' in strict.get(URL).content
    assert strict.post(URL, ASK).status_code == 403
    assert not Generation.objects.filter(owner=user).exists()


def test_only_the_plans_models_are_offered_and_its_concurrency_holds(client, openai_model):
    AccountTypeLimits.objects.create(account_type="FREE", allowed_models=["gpt-image-1"], concurrency=1)
    user = make_user(credits=50)
    client.force_login(user)
    assert catalog_of(client.get(URL).content).keys() == {"gpt-image-1"}
    refused = client.post(URL, ASK)  # gpt-image-2: not in the plan
    assert refused.status_code == 400 and b"Select a valid choice. gpt-image-2" in refused.content

    asked = {**ASK, "model": "gpt-image-1"}
    assert client.post(URL, asked).status_code == 302
    busy = client.post(URL, asked)  # the first is still queued
    assert busy.status_code == 429
    assert b"Your plan runs 1 generation at once from here" in busy.content
    assert Generation.objects.filter(owner=user).count() == 1


def test_another_users_generation_is_not_found(client):
    theirs = create_generation(make_user(credits=10))
    client.force_login(make_user())
    response = client.get(f"{URL}?generation={theirs.id}")
    assert response.status_code == 404
    assert theirs.prompt.encode() not in response.content


def events_of(response) -> list[str]:
    body = b"".join(response.streaming_content).decode()
    return re.findall(r"^event: (\S+)$", body, re.M)


def test_the_events_stream_answers_its_owners_session_only(client):
    owner = make_user(credits=10)
    generation = make_generation(owner)
    url = f"/api/v1/generations/{generation.id}/events"
    client.force_login(owner)
    response = client.get(url, HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    assert events_of(response) == ["generation.queued", "generation.started", "generation.succeeded"]

    client.force_login(make_user())
    stranger = client.get(url)
    assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "notFound"
    client.logout()
    assert client.get(url).status_code == 401
