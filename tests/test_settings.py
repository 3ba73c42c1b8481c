"""Settings are read strictly: a value that cannot mean what the setting needs stops start-up."""

import os
import subprocess

from tests.conftest import HUB_PYTHON, ROOT


def _check(**env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HUB_PYTHON, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "hub.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_boolean_setting_that_is_not_a_boolean_stops_start_up():
    result = _check(HUB_SECURE_COOKIES="maybe")
    assert result.returncode != 0
    assert "HUB_SECURE_COOKIES='maybe' is not a boolean" in result.stderr


def test_boolean_settings_accept_the_usual_spellings():
    result = _check(HUB_SECURE_COOKIES="TRUE", HUB_BEHIND_TLS_PROXY="off", DJANGO_DEBUG="0")
    assert result.returncode == 0, result.stderr


def test_the_stripe_settings_go_together_and_must_be_stripe_s_kinds_of_secret():
    both = {"STRIPE_SECRET_KEY": "sk_test_1", "STRIPE_WEBHOOK_SECRET": "whsec_1"}
    refused = [
        ({"STRIPE_SECRET_KEY": "sk_test_1"}, "STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET go together"),
        ({"STRIPE_WEBHOOK_SECRET": "whsec_1"}, "STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET go together"),
        ({**both, "STRIPE_SECRET_KEY": "pk_test_1"}, "must be a Stripe secret or restricted key"),
        ({**both, "STRIPE_WEBHOOK_SECRET": "secret"}, "the webhook endpoint's signing secret (whsec_…)"),
        ({**both, "STRIPE_API_BASE": "localhost:12111"}, "STRIPE_API_BASE must be an http(s) URL"),
    ]
    for env, message in refused:
        result = _check(**env)
        assert result.returncode != 0 and message in result.stderr, env
    result = _check(**both, STRIPE_API_BASE="http://127.0.0.1:12111")
    assert result.returncode == 0, result.stderr


def test_a_worker_concurrency_that_is_not_a_number_of_tasks_stops_start_up():
    for value in ("many", "0", "-4"):
        result = _check(CELERY_WORKER_CONCURRENCY=value)
        assert result.returncode != 0
        assert f"CELERY_WORKER_CONCURRENCY={value!r} is not a number of tasks" in result.stderr
    assert _check(CELERY_WORKER_CONCURRENCY="").returncode == 0  # empty is unset (docker compose)


def test_hub_upstream_keys_must_be_fernet_keys_and_are_never_echoed():
    result = _check(HUB_UPSTREAM_KEYS="not-a-fernet-key-but-a-secret")
    assert result.returncode != 0
    assert "HUB_UPSTREAM_KEYS: key 1 is not a Fernet key" in result.stderr
    assert "not-a-fernet-key-but-a-secret" not in result.stderr


def test_the_sync_wait_is_a_positive_time_within_the_generation_timeout():
    for value in ("0", "-1", "801", "soon"):
        result = _check(HUB_SYNC_WAIT_SECONDS=value, GENERATION_TIMEOUT_SECONDS="800")
        assert result.returncode != 0, value
        assert "HUB_SYNC_WAIT_SECONDS" in result.stderr, value
    assert _check(HUB_SYNC_WAIT_SECONDS="55.5").returncode == 0


def test_the_stream_keepalive_is_a_positive_time_of_at_most_a_minute():
    for value in ("0", "-2", "61", "often"):
        result = _check(HUB_STREAM_KEEPALIVE_SECONDS=value)
        assert result.returncode != 0, value
        assert "HUB_STREAM_KEEPALIVE_SECONDS" in result.stderr, value
    assert _check(HUB_STREAM_KEEPALIVE_SECONDS="2.5").returncode == 0
