"""Production (a PostgreSQL DATABASE_URL) refuses unsafe settings: no shared secret, a placeholder or
short one, debug pages, the placeholder `local` provider serving the catalog; and `check --deploy`
is clean with the documented settings."""

import os
import re
import secrets
import subprocess

import pytest
from django.conf import settings
from django.test import Client, override_settings

from billing.models import CreditAccount
from generations.models import Generation
from tests.conftest import HUB_PYTHON, ROOT, WebProcess, WorkerProcess, database_url_for_subprocess
from tests.factories import create_generation
from workers.runner import generation_run


def _documented_production() -> dict:
    """The production example of .env.example (the values it shows), on this test's database,
    Redis and state folder, with a real secret in place of the placeholder."""
    pairs = re.findall(r"^# ([A-Z][A-Z0-9_]*)=(.+)$", (ROOT / ".env.example").read_text(), re.MULTILINE)
    return {
        **dict(pairs),
        "DATABASE_URL": database_url_for_subprocess(),
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
        "HUB_VAR_DIR": str(settings.VAR_DIR),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    }


def _inherited() -> dict:
    """This process's environment, less what only a test run sets (the browser tests' conftest
    sets DJANGO_ALLOW_ASYNC_UNSAFE, which `check --deploy` rightly refuses)."""
    return {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HUB_PYTHON, "manage.py", *args],
        cwd=ROOT,
        env={**_inherited(), "DJANGO_SETTINGS_MODULE": "hub.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_postgres_without_a_secret_key_refuses_to_start():
    result = _manage("check", DATABASE_URL="postgres://hub@127.0.0.1:1/hub", DJANGO_SECRET_KEY="")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


# The compose block of .env.example, as it ships (its uncommented lines): placeholders to replace.
SHIPPED = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.+)$", (ROOT / ".env.example").read_text(), re.MULTILINE))
OFFLINE_POSTGRES = "postgres://hub@127.0.0.1:1/hub"  # refused while the settings load: never reached


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        *[
            ({name: SHIPPED[name]}, f"{name} is still the example's placeholder")
            for name in ("DJANGO_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
        ],
        # docker-compose.yml puts the bundled PostgreSQL's password into DATABASE_URL.
        (
            {"DATABASE_URL": f"postgres://hub:{SHIPPED['POSTGRES_PASSWORD']}@127.0.0.1:1/hub"},
            "DATABASE_URL's password is still",
        ),
        ({"DJANGO_SECRET_KEY": "a" * 31}, "DJANGO_SECRET_KEY is shorter than 32 characters"),
        ({"API_KEY_PEPPER": "change-me-to-another-50-random-characters"}, "API_KEY_PEPPER is still the example's"),
        ({"REDIS_URL": "redis://:change-me@127.0.0.1:1/0"}, "REDIS_URL's password is still the example's"),
        ({"HUB_METRICS_TOKEN": "change-me-to-32-random-characters"}, "HUB_METRICS_TOKEN is still the example's"),
        ({"DJANGO_DEBUG": "true"}, "DJANGO_DEBUG=true on PostgreSQL"),
    ],
)
def test_postgres_refuses_placeholder_secrets_a_short_key_and_debug(env, refusal):
    result = _manage("check", **{"DATABASE_URL": OFFLINE_POSTGRES, **env})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {refusal}" in result.stderr, result.stderr[-2000:]


def test_the_embedded_default_takes_any_secret_key_and_debug(tmp_path):
    """SQLite is one machine's hub (make run): nothing to share, nothing public."""
    result = _manage(
        "check",
        DATABASE_URL=f"sqlite:///{tmp_path / 'hub.sqlite3'}",
        DJANGO_SECRET_KEY="change-me",
        DJANGO_DEBUG="true",
    )
    assert result.returncode == 0, result.stderr


needs_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the refusal applies on PostgreSQL"
)


@pytest.mark.slow
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_manage_py_refuses_a_catalog_served_by_the_local_provider():
    database = database_url_for_subprocess()
    refused = _manage("check", DATABASE_URL=database, IMAGE_PROVIDER="local", HUB_ALLOW_LOCAL_PROVIDER="false")
    assert refused.returncode != 0
    assert "gpt-image-2 would be served by the built-in `local` provider" in refused.stderr
    assert "HUB_ALLOW_LOCAL_PROVIDER=true" in refused.stderr and "IMAGE_PROVIDER=openai" in refused.stderr

    assert (
        _manage("check", DATABASE_URL=database, IMAGE_PROVIDER="openai", HUB_ALLOW_LOCAL_PROVIDER="false").returncode
        == 0
    )
    assert (
        _manage("check", DATABASE_URL=database, IMAGE_PROVIDER="local", HUB_ALLOW_LOCAL_PROVIDER="true").returncode == 0
    )


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_debug_on_postgres_runs_when_explicitly_allowed():
    database = database_url_for_subprocess()
    result = _manage("check", DATABASE_URL=database, DJANGO_DEBUG="true", HUB_ALLOW_DEBUG_IN_PRODUCTION="true")
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_worker_and_web_refuse_to_start_on_the_local_provider():
    refuse = {"IMAGE_PROVIDER": "local", "HUB_ALLOW_LOCAL_PROVIDER": "false"}
    worker = WorkerProcess(name="refused", env_overrides=refuse)
    with pytest.raises(RuntimeError, match="HUB_ALLOW_LOCAL_PROVIDER=true"):
        worker.start()
    assert worker.proc.wait(10) != 0
    web = WebProcess(env_overrides=refuse)
    with pytest.raises(RuntimeError, match="HUB_ALLOW_LOCAL_PROVIDER=true"):
        web.start()
    assert web.proc.wait(10) != 0
    worker.log.close()
    web.log.close()


@pytest.mark.django_db(transaction=True)
def test_a_generation_is_not_run_on_the_local_provider_when_it_is_not_allowed(customer, unconsumed_queue):
    """The catalog can be edited while the hub runs: every generation is checked too."""
    user = customer[0]
    generation = create_generation(user, n=2)
    with override_settings(ALLOW_LOCAL_PROVIDER=False, IMAGE_PROVIDER="local"):
        generation_run(generation.id)
    generation = Generation.objects.get(pk=generation.pk)
    assert (generation.status, generation.error_code) == ("failed", "provider_error")
    assert generation.images.count() == 0
    assert CreditAccount.objects.get(user=user).balance == 120


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_check_deploy_is_clean_with_the_documented_production_settings():
    production = _documented_production()
    assert production["HUB_BEHIND_TLS_PROXY"] == "true" and production["IMAGE_PROVIDER"] == "openai"
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **production)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_plain_http_is_redirected_except_for_the_health_probes():
    with override_settings(SECURE_SSL_REDIRECT=True):
        client = Client()
        assert client.get("/healthz").status_code == 200
        redirect = client.get("/account/login/")
        assert redirect.status_code == 301 and redirect["Location"] == "https://testserver/account/login/"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/account/login/", "/account/signup/", "/admin/login/"])
def test_account_pages_and_the_admin_send_a_content_security_policy(client, path):
    policy = client.get(path)["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "'unsafe-inline'" not in directives["default-src"]


@pytest.mark.django_db
def test_the_json_api_sends_no_page_policy(client):
    assert "Content-Security-Policy" not in client.get("/api/v1/models")
