"""Settings are read strictly: a value that cannot mean what the setting needs stops start-up."""

import os
import subprocess
import sys

from tests.conftest import ROOT


def _check(**env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
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


def test_a_worker_concurrency_that_is_not_a_number_of_tasks_stops_start_up():
    for value in ("many", "0", "-4"):
        result = _check(CELERY_WORKER_CONCURRENCY=value)
        assert result.returncode != 0
        assert f"CELERY_WORKER_CONCURRENCY={value!r} is not a number of tasks" in result.stderr
    assert _check(CELERY_WORKER_CONCURRENCY="").returncode == 0  # empty is unset (docker compose)
