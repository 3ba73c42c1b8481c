"""hub_keylimits (prefix resolution, set, clear, errors) and GET /api/v1/usage (numbers, days,
owner isolation)."""

import os
import subprocess
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apikeys.models import ApiKey
from apikeys.services import api_key_create
from billing.models import AccountTypeLimits
from generations.services import generation_cancel, generation_create
from tests.bounds import REFUSED, refused_input
from tests.conftest import HUB_PYTHON, ROOT, database_url_for_subprocess
from tests.factories import bearer, make_user

pytestmark = pytest.mark.django_db


def _run(*args) -> str:
    out = StringIO()
    call_command("hub_keylimits", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_keylimits_sets_clears_and_prints_the_keys_limits():
    AccountTypeLimits.objects.create(account_type="FREE", images_per_minute=5)
    key, _ = api_key_create(owner=make_user(), name="ci")
    out = _run(key.display_prefix, "--models", "gpt-image-2", "--concurrency", "3", "--monthly-credits", "1000")
    assert "key:       models=gpt-image-2 images_per_minute=none concurrency=3 monthly_credits=1000" in out
    assert "effective: models=gpt-image-2 images_per_minute=5 concurrency=3 monthly_credits=1000" in out
    key.refresh_from_db()
    assert (key.allowed_models, key.concurrency, key.monthly_credits) == (["gpt-image-2"], 3, 1000)

    _run(key.pk, "--concurrency", "none", "--images-per-minute", "20")
    key.refresh_from_db()
    assert (key.concurrency, key.images_per_minute, key.monthly_credits) == (None, 20, 1000)
    out = _run(key.display_prefix, "--clear")
    assert "key:       models=any images_per_minute=none concurrency=none monthly_credits=none" in out
    assert "key:       models=any" in _run(key.display_prefix)  # no option: only shows


def test_keylimits_refuses_unknown_or_ambiguous_keys_and_bad_values():
    user = make_user()
    keys = [api_key_create(owner=user)[0] for _ in range(2)]
    with pytest.raises(CommandError, match="No active API key"):
        _run("gih_live_zzzz", "--concurrency", "1")
    ApiKey.objects.filter(pk=keys[1].pk).update(display_prefix=keys[0].display_prefix)
    with pytest.raises(CommandError, match="several active keys"):
        _run(keys[0].display_prefix, "--concurrency", "1")
    with pytest.raises(CommandError, match="Unknown model"):
        _run(keys[0].pk, "--models", "dall-e-9")
    with pytest.raises(CommandError, match="not a whole number from 1 to"):
        _run(keys[0].pk, "--concurrency", "0")


@pytest.mark.parametrize("kind", REFUSED)
@pytest.mark.parametrize("option", ["images-per-minute", "concurrency", "monthly-credits"])
def test_keylimits_refuses_a_number_its_column_cannot_hold_in_one_line(option, kind):
    key, _ = api_key_create(owner=make_user())
    text = refused_input(kind, ApiKey, option.replace("-", "_"))
    with pytest.raises(CommandError) as refused:
        _run(key.pk, f"--{option}", text)
    assert str(refused.value).startswith(f"Error: argument --{option}: ") and "\n" not in str(refused.value)
    key.refresh_from_db()
    assert (key.images_per_minute, key.concurrency, key.monthly_credits) == (None, None, None)


@pytest.mark.parametrize("text", ["abc", str(2**63)])
def test_keylimits_on_the_command_line_says_what_is_wrong_without_a_traceback(text):
    key, _ = api_key_create(owner=make_user())
    done = subprocess.run(
        [HUB_PYTHON, "manage.py", "hub_keylimits", key.pk, "--images-per-minute", text],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url_for_subprocess()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "argument --images-per-minute: " in done.stderr, done.stderr
    assert ApiKey.objects.get(pk=key.pk).images_per_minute is None


def _generate(user, key, *, n: int, quality: str = "low"):
    return generation_create(
        owner=user,
        api_key=key,
        model_id="gpt-image-2",
        prompt="usage",
        size="1024x1024",
        quality=quality,
        n=n,
        is_async=True,
        references=[],
    )


def test_usage_per_key_and_day_matches_charges_and_refunds_and_shows_only_the_callers_keys(api):
    user = make_user(credits=100)
    ci, ci_raw = api_key_create(owner=user, name="ci")
    app, _ = api_key_create(owner=user, name="app")
    _generate(user, ci, n=2)  # 4 credits
    canceled = _generate(user, ci, n=1)  # 2 credits, refunded
    generation_cancel(owner=user, generation_id=canceled.id)
    _generate(user, app, n=1, quality="high")  # 8 credits
    stranger = make_user(credits=100)
    stranger_key, stranger_raw = api_key_create(owner=stranger)
    _generate(stranger, stranger_key, n=4)

    response = api.get("/api/v1/usage", **bearer(ci_raw))
    assert response.status_code == 200
    body = response.json()
    assert (body["object"], body["days"]) == ("list", 30)
    rows = {row["api_key_name"]: row for row in body["data"]}
    assert set(rows) == {"ci", "app"}
    assert {k: rows["ci"][k] for k in ("images", "credits_charged", "credits_refunded", "credits")} == {
        "images": 2,
        "credits_charged": 6,
        "credits_refunded": 2,
        "credits": 4,
    }
    assert (rows["ci"]["api_key_id"], rows["ci"]["api_key_prefix"]) == (ci.pk, ci.display_prefix)
    assert (rows["app"]["images"], rows["app"]["credits"]) == (1, 8)
    theirs = api.get("/api/v1/usage", **bearer(stranger_raw)).json()["data"]
    assert [(row["api_key_id"], row["images"]) for row in theirs] == [(stranger_key.pk, 4)]
    for days in ["0", "367", "abc", "-1", str(2**63), str(10**30)]:
        refused = api.get(f"/api/v1/usage?days={days}", **bearer(ci_raw))
        assert (refused.status_code, refused.json()["error"]["param"]) == (400, "days")
    assert api.get("/api/v1/usage").status_code == 401
