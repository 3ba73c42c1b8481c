"""Per-key limits through the API, in process: allowed models (403), images per minute and
concurrency (429 with Retry-After and x-ratelimit-*), the monthly cap in the charging
transaction, account-type defaults, and the database fallback used without Redis."""

import time

import pytest
from django.core.management import CommandError

from apikeys import ratelimit
from apikeys.models import ApiKey, ApiKeyUsage
from apikeys.services import api_key_rate_take_db
from billing.models import AccountTypeLimits, CreditAccount, LedgerEntry
from generations.models import Generation
from generations.sweeper import generations_sweep
from tests.concurrency import run_together
from tests.conftest import not_near_a_minute_edge
from tests.factories import bearer, make_key, make_user
from tests.reconcile import assert_reconciled

URL = "/api/v1/images/generations"
LOW = {"model": "gpt-image-2", "prompt": "a lighthouse", "size": "1024x1024", "quality": "low", "async": True}


def _key(user, **limits) -> tuple[ApiKey, dict]:
    raw = make_key(user)
    key = ApiKey.objects.get(owner=user, display_prefix=raw[:13])
    ApiKey.objects.filter(pk=key.pk).update(**limits)
    return key, bearer(raw)


def _post(api, auth, **fields):
    return api.post(URL, {**LOW, **fields}, format="json", **auth)


def _assert_rate_limited(response, *, limit: int, code: str = "rateLimited"):
    assert response.status_code == 429, response.content
    error = response.json()["error"]
    assert (error["code"], error["type"]) == (code, "rate_limit_error")
    assert int(response["Retry-After"]) >= 1
    assert response["x-ratelimit-limit"] == str(limit)
    assert int(response["x-ratelimit-remaining"]) >= 0
    assert int(response["x-ratelimit-reset"]) >= 1


@pytest.mark.django_db
def test_model_outside_the_keys_list_is_forbidden_and_nothing_is_charged(api, openai_model):
    user = make_user(credits=100)
    _, auth = _key(user, allowed_models=["gpt-image-1"])
    response = _post(api, auth)
    assert response.status_code == 403
    assert response.json()["error"] | {"message": ""} == {
        "message": "",
        "code": "modelNotAllowed",
        "type": "permission_error",
        "param": "model",
    }
    assert response["x-should-retry"] == "false"
    assert _post(api, auth, model="gpt-image-1").status_code == 202
    assert CreditAccount.objects.get(user=user).balance == 99


@pytest.mark.django_db
def test_account_type_defaults_apply_unless_the_key_sets_its_own(api, openai_model):
    AccountTypeLimits.objects.create(account_type="FREE", allowed_models=["gpt-image-1"], images_per_minute=1)
    user = make_user(credits=100)  # FREE
    _, default_auth = _key(user)
    assert _post(api, default_auth).status_code == 403
    assert _post(api, default_auth, model="gpt-image-1").status_code == 202
    _assert_rate_limited(_post(api, default_auth, model="gpt-image-1"), limit=1)
    _, own_auth = _key(user, allowed_models=["gpt-image-2"], images_per_minute=3)
    assert [_post(api, own_auth).status_code for _ in range(4)] == [202, 202, 202, 429]


@pytest.mark.django_db
def test_images_per_minute_counts_n_and_gives_back_what_a_refused_charge_took(api):
    user = make_user(credits=100)  # low: 2 credits an image
    key, auth = _key(user, images_per_minute=4, monthly_credits=6)
    assert _post(api, auth, n=2).status_code == 202
    capped = _post(api, auth, n=2)  # 8 credits > 6: refused in the charge, after the minute was taken
    assert capped.json()["error"]["code"] == "monthlyCreditCapReached"
    assert _post(api, auth, n=1).status_code == 202  # the refused request's 2 images were given back
    _assert_rate_limited(_post(api, auth, n=2), limit=4)
    refused = _post(api, auth, n=2)
    assert refused["x-ratelimit-remaining"] == "1"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["x-should-retry"] == "true"


@pytest.mark.django_db(transaction=True)
def test_monthly_cap_is_checked_in_the_charge_and_a_refund_makes_room(api, unconsumed_queue):
    user = make_user(credits=100)
    key, auth = _key(user, monthly_credits=5)
    first = _post(api, auth, n=2)  # 4 credits
    assert first.status_code == 202
    capped = _post(api, auth, n=1)  # 6 > 5
    _assert_rate_limited(capped, limit=5, code="monthlyCreditCapReached")
    assert capped["x-should-retry"] == "false"
    assert capped["x-ratelimit-remaining"] == "1"
    assert int(capped["Retry-After"]) <= 31 * 86400
    assert LedgerEntry.objects.filter(account__user=user, kind="charge").count() == 1
    assert CreditAccount.objects.get(user=user).balance == 96

    api.post(f"/api/v1/generations/{first.json()['id']}/cancel", **auth)  # refunded: 0 spent this month
    assert _post(api, auth, n=2).status_code == 202
    usage = ApiKeyUsage.objects.get(api_key=key)
    assert (usage.images, usage.images_refunded, usage.credits_charged, usage.credits_refunded) == (4, 2, 8, 4)
    assert_reconciled()


def _unfinished(key) -> int:
    return Generation.objects.filter(api_key=key, status__in=["queued", "running"]).count()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("redis", [True, False], ids=["redis", "database"])
def test_concurrency_counts_unfinished_generations_and_a_finish_frees_a_slot(api, unconsumed_queue, settings, redis):
    if not redis:
        settings.REDIS_URL = ""
    elif not settings.REDIS_URL:
        pytest.skip("needs Redis")
    user = make_user(credits=100)
    key, auth = _key(user, concurrency=2)
    ids = [_post(api, auth).json()["id"] for _ in range(2)]
    _assert_rate_limited(_post(api, auth), limit=2)
    assert _unfinished(key) == 2
    api.post(f"/api/v1/generations/{ids[0]}/cancel", **auth)
    assert _post(api, auth).status_code == 202
    _assert_rate_limited(_post(api, auth), limit=2)
    assert_reconciled()


@pytest.mark.django_db(transaction=True)
def test_database_fallback_lets_exactly_the_limit_through_concurrent_takes():
    not_near_a_minute_edge()
    user = make_user()
    key, _ = _key(user)
    results = []
    run_together([lambda: results.append(api_key_rate_take_db(api_key_id=key.pk, cost=1, limit=5)[0].allowed)] * 20)
    assert (results.count(True), results.count(False)) == (5, 15)


@pytest.mark.django_db
def test_database_fallback_answers_429_through_the_api(api, settings):
    settings.REDIS_URL = ""
    not_near_a_minute_edge()
    user = make_user(credits=100)
    _, auth = _key(user, images_per_minute=3)
    assert [_post(api, auth).status_code for _ in range(3)] == [202, 202, 202]
    _assert_rate_limited(_post(api, auth), limit=3)


@pytest.mark.django_db(transaction=True)
def test_sweeper_releases_slots_of_finished_and_vanished_generations(api, unconsumed_queue, settings):
    if not settings.REDIS_URL:
        pytest.skip("slots live in Redis")
    user = make_user(credits=100)
    key, auth = _key(user, concurrency=5)
    kept = _post(api, auth).json()["id"]
    finished = _post(api, auth).json()["id"]
    Generation.objects.filter(pk=finished).update(status="failed")  # as if its release was lost
    old = time.time() - 3600
    client = ratelimit.redis_client()
    client.zadd(f"hub:rl:slots:{key.pk}", {"gen_vanished": old * 1000, "gen_committing": time.time() * 1000})

    assert generations_sweep().released_slots == 2
    members = {m.decode() for m in client.zrange(f"hub:rl:slots:{key.pk}", 0, -1)}
    assert members == {kept, "gen_committing"}


@pytest.mark.django_db
def test_reconcile_reports_key_usage_that_drifts_from_the_generations(api):
    user = make_user(credits=100)
    key, auth = _key(user)
    assert _post(api, auth, n=2).status_code == 202
    assert_reconciled()
    ApiKeyUsage.objects.filter(api_key=key).update(credits_charged=1)
    with pytest.raises(CommandError, match="1 problem"):
        assert_reconciled()
