"""What each generation cost the operator: every provider call recorded where it ends (upstream,
latency, outcome, the provider's usage, its cost by the upstream's prices), prices set in the
command and the admin, and the admin's cost per day, model and upstream."""

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.admin.utils import quote
from django.core.management import CommandError, call_command

from tests.factories import bearer, make_key, make_user
from tests.faults.conftest import wait_for_status
from tests.reconcile import assert_reconciled
from tests.upstreams.conftest import KEY, OTHER_KEY
from upstreams.costs import Usage, call_cost, prices_check
from upstreams.models import Upstream, UpstreamCall

URL = "/api/v1/images/generations"
PER_IMAGE = {"per_image": {"low": {"1024x1024": "0.011", "*": "0.016"}, "medium": {"1536x1024": "0.063"}}}
PER_TOKEN = {"per_million_tokens": {"input_text": "5", "input_image": "10", "output_image": "40", "output_text": "10"}}


def generate(api, user, count: int = 1, **body) -> list:
    body = {"model": "gpt-image-1", "size": "1024x1024", "quality": "low", "n": 1, "async": True, **body}
    ids = []
    for index in range(count):
        response = api.post(URL, {**body, "prompt": f"p {index}"}, format="json", **bearer(make_key(user)))
        assert response.status_code == 202, response.content
        ids.append(response.json()["id"])
    return [wait_for_status(generation_id, ["succeeded", "failed"], timeout=60) for generation_id in ids]


@pytest.mark.parametrize(
    ("quality", "size", "images", "cost"),
    [
        ("low", "1024x1024", 1, "0.011"),
        ("low", "1536x1024", 2, "0.032"),  # "*": any other size
        ("medium", "1536x1024", 3, "0.189"),
        ("high", "1024x1024", 1, None),  # no price for it: unknown, not free
    ],
)
def test_a_call_priced_per_image_costs_its_images(quality, size, images, cost):
    prices = prices_check(PER_IMAGE)
    expected = Decimal(cost) if cost else None
    assert call_cost(prices, quality=quality, size=size, images=images, usage=None) == expected


def test_a_call_priced_per_token_costs_the_tokens_it_used():
    prices = prices_check(PER_TOKEN)
    usage = Usage(input_text=20, input_image=323, output_image=4160, output_text=0)
    # (20 × 5 + 323 × 10 + 4160 × 40) / 1,000,000
    assert call_cost(prices, quality="high", size="1024x1024", images=1, usage=usage) == Decimal("0.169730")
    assert call_cost(prices, quality="high", size="1024x1024", images=1, usage=None) is None  # no usage said
    assert call_cost({}, quality="high", size="1024x1024", images=1, usage=usage) is None  # no prices


def test_the_usage_a_client_is_shown_is_openais_as_the_provider_reported_it():
    reported = {
        "input_tokens": 343,
        "input_tokens_details": {"text_tokens": 20, "image_tokens": 323},
        "output_tokens": 4160,
        "total_tokens": 4503,
    }
    assert Usage.from_response(reported).as_response() == reported
    # Only part of it said (no input details): no total is guessed, none is shown.
    assert Usage.from_response({"input_tokens": 343, "output_tokens": 4160}).as_response() is None


@pytest.mark.parametrize(
    "prices",
    [
        {"per_image": {"low": {"1024x1024": "-0.01"}}},
        {"per_image": {"low": {"1024x1024": "cheap"}}},
        {"per_image": {"low": "0.01"}},
        {"per_million_tokens": {"thinking": "5"}},
        {"per_image": {"low": {"*": "0.01"}}, "per_million_tokens": {"input_text": "5"}},
        ["0.01"],
    ],
)
@pytest.mark.django_db
def test_prices_that_are_not_prices_are_refused_by_the_command(openai_model, prices):
    call_command("hub_upstream", "add", "priced", "--api-key", KEY, "--models", "gpt-image-1", stdout=StringIO())
    with pytest.raises(CommandError, match="rice"):
        call_command("hub_upstream", "prices", "priced", json.dumps(prices), stdout=StringIO())
    assert Upstream.objects.get(name="priced").prices == {}


@pytest.mark.django_db
def test_prices_are_set_by_the_command_and_in_the_admin(openai_model, admin_client):
    out = StringIO()
    call_command(
        "hub_upstream", "add", "priced", "--api-key", KEY, "--models", "gpt-image-1", "--prices", json.dumps(PER_IMAGE)
    )
    call_command("hub_upstream", "list", stdout=out)
    assert '"1024x1024":"0.011"' in out.getvalue()
    upstream = Upstream.objects.get(name="priced")
    form = {
        "name": "priced",
        "adapter": "openai",
        "base_url": "",
        "api_version": "",
        "api_key": "",
        "priority": 0,
        "weight": 1,
        "concurrency": "",
        "images_per_minute": "",
        "enabled": "on",
        "routes-TOTAL_FORMS": 0,
        "routes-INITIAL_FORMS": 0,
    }
    refused = admin_client.post(
        f"/admin/upstreams/upstream/{quote(upstream.pk)}/change/", {**form, "prices": '{"per_image": 3}'}
    )
    assert refused.status_code == 200 and "Image prices are" in refused.content.decode()
    saved = admin_client.post(
        f"/admin/upstreams/upstream/{quote(upstream.pk)}/change/", {**form, "prices": json.dumps(PER_TOKEN)}
    )
    assert saved.status_code == 302, saved.content.decode()[:2000]
    upstream.refresh_from_db()
    assert upstream.prices == PER_TOKEN


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_each_call_of_a_failover_is_recorded_with_its_usage_and_cost_and_the_report_sums_them(
    api, openai_model, make_upstream, fake_openai, start_worker, admin_client, settings
):
    if not settings.REDIS_URL:
        pytest.skip("circuits are shared through Redis")
    settings.CREDIT_VALUE = Decimal("0.02")
    user = make_user(credits=100)
    primary = make_upstream("primary", KEY, priority=0, prices=PER_IMAGE)
    secondary = make_upstream("secondary", OTHER_KEY, priority=1, prices=PER_TOKEN)
    fake_openai.key(KEY, failing=500)
    start_worker(HUB_UPSTREAM_FAILURE_THRESHOLD="1", HUB_UPSTREAM_COOLOFF_SECONDS="600")

    (first,) = generate(api, user)
    assert first.status == "succeeded"
    failed, delivered = UpstreamCall.objects.filter(generation=first)  # in the order they started
    assert (failed.upstream_id, failed.upstream_name, failed.outcome, failed.images) == (
        primary.pk,
        "primary",
        "unavailable",
        0,
    )
    assert failed.cost == 0 and failed.output_image_tokens is None  # a 500 is billed nothing
    assert (delivered.upstream_id, delivered.outcome, delivered.images) == (secondary.pk, "ok", 1)
    # the fake's usage for "p 0", low 1024x1024: 1 text token, 272 image tokens out
    tokens = (delivered.input_text_tokens, delivered.input_image_tokens, delivered.output_image_tokens)
    assert tokens == (1, 0, 272) and delivered.output_text_tokens == 0
    assert delivered.cost == Decimal("0.010885")  # (1 × 5 + 272 × 40) / 1,000,000
    assert failed.started_at <= delivered.started_at and delivered.latency_ms >= 0

    # The primary's circuit is open: two medium 1536x1024 generations of 2 go to the secondary.
    generate(api, user, count=2, size="1536x1024", quality="medium", n=2)
    medium = UpstreamCall.objects.filter(generation__quality="medium")
    assert [(call.upstream_name, call.images, call.output_image_tokens) for call in medium] == [
        ("secondary", 2, 2 * 1584)
    ] * 2
    assert {call.cost for call in medium} == {Decimal("0.126725")}  # (5 + 3168 × 40) / 1,000,000
    assert_reconciled()

    report = admin_client.get("/admin/upstreams/upstreamcall/cost/").content.decode()
    rows = report.split('id="cost"')[1].split("</table>")[0].split("<tr>")[2:]
    cells = [[cell.split("</td>")[0] for cell in row.split("<td>")[2:]] for row in rows]
    # model, upstream, calls, images, credits (1 + 2 × 6), upstream cost, margin (credits × 0.02 − cost)
    assert cells == [
        ["gpt-image-1", "primary", "1", "0", "0", "0.000000", "0.000000"],
        ["gpt-image-1", "secondary", "3", "5", "13", "0.264335", "-0.004335"],
    ]
