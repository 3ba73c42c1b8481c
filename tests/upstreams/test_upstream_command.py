"""`hub_upstream`: add, list, disable, enable and rotate-keys; credentials encrypted at rest and
only ever shown as a hint — in the command's output, the admin, the database column."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.admin.utils import quote
from django.core import checks
from django.core.management import CommandError, call_command
from django.db import connection

from tests.upstreams.conftest import KEY
from upstreams.checks import upstream_credentials_check
from upstreams.credentials import credential_open
from upstreams.models import Upstream

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("hub_upstream", *args, stdout=out)
    return out.getvalue()


def add(*extra, name="primary", key=KEY) -> str:
    return run("add", name, "--base-url", "https://llm.example.com/v1", "--api-key", key, *extra)


def stored_column(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT credential_encrypted FROM upstreams_upstream WHERE name = %s", [name])
        return cursor.fetchone()[0]


def test_an_upstream_is_added_listed_disabled_and_enabled_with_its_key_never_shown(openai_model):
    out = add("--models", "gpt-image-1,gpt-image-2=image-deploy", "--concurrency", "20", "--images-per-minute", "60")
    assert "Added primary (sk-…cdef)" in out
    upstream = Upstream.objects.get(name="primary")
    assert out.splitlines()[-1] == upstream.pk
    assert (upstream.concurrency, upstream.images_per_minute, upstream.priority, upstream.weight) == (20, 60, 0, 1)
    assert dict(upstream.routes.values_list("model_id", "upstream_model")) == {
        "gpt-image-1": "",
        "gpt-image-2": "image-deploy",
    }
    column = stored_column("primary")
    assert KEY not in column and "0123456789" not in column  # encrypted at rest
    assert credential_open(column) == KEY
    listed = run("list")
    assert "primary  enabled  sk-…cdef" in listed and "gpt-image-2=image-deploy" in listed
    # its shared state (circuit, calls in flight) is in Redis (upstreams.state)
    assert ("closed, 0 of 20 in flight" if settings.REDIS_URL else "state unknown (no Redis)") in listed
    assert run("disable", "primary") == "primary: disabled\n"
    assert not Upstream.objects.get(name="primary").enabled
    assert run("enable", "primary") == "primary: enabled\n"
    for text in (out, listed):
        assert KEY not in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--models", "gpt-image-9"], "Unknown model(s): gpt-image-9"),
        (["--models", "gpt-image-2", "--concurrency", "0"], "argument --concurrency: '0' is not a whole number"),
        (["--models", "gpt-image-2", "--concurrency", "x"], "argument --concurrency: 'x' is not a whole number"),
        (["--models", "gpt-image-2", "--weight", str(2**63)], "argument --weight:"),
        (["--models", "gpt-image-2", "--priority", "-1"], "argument --priority: '-1' is not a whole number"),
        (["--models", "gpt-image-2", "--images-per-minute", "1e30"], "argument --images-per-minute:"),
        (["--models", "gpt-image-2", "--provider", "azure"], "Azure OpenAI needs the resource's endpoint"),
        (["--models", "gpt-image-2", "--provider", "gemini"], "argument --provider: invalid choice"),
    ],
)
def test_bad_options_are_one_line_command_errors(args, message):
    with pytest.raises(CommandError) as refused:
        add(*args)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value).strip()
    assert not Upstream.objects.exists()


def test_bad_names_urls_keys_and_repeats_are_refused():
    with pytest.raises(CommandError, match="is not a name"):
        add("--models", "gpt-image-2", name="Not A Name")
    with pytest.raises(CommandError, match="is not an http"):
        run("add", "odd", "--base-url", "ftp://x", "--api-key", KEY, "--models", "gpt-image-2")
    with pytest.raises(CommandError, match="empty or has spaces"):
        add("--models", "gpt-image-2", key="sk- with spaces in it")
    add("--models", "gpt-image-2")
    with pytest.raises(CommandError, match="An upstream named 'primary' exists already"):
        add("--models", "gpt-image-2")
    with pytest.raises(CommandError, match="No upstream is named 'nobody'"):
        run("disable", "nobody")


def test_on_postgresql_a_credential_needs_hub_upstream_keys(settings):
    settings.UPSTREAM_KEYS = []
    settings.SHARED_DATABASE = True
    with pytest.raises(CommandError, match="HUB_UPSTREAM_KEYS is not set"):
        add("--models", "gpt-image-2")
    assert not Upstream.objects.exists()


def test_keys_rotate_and_a_removed_key_is_refused_at_start_up(settings):
    add("--models", "gpt-image-2")
    assert upstream_credentials_check() == []
    old = list(settings.UPSTREAM_KEYS)
    new = Fernet.generate_key().decode()
    settings.UPSTREAM_KEYS = [new]  # the old key dropped before rotating: start-up refuses
    (error,) = upstream_credentials_check()
    assert error.level == checks.ERROR and error.id == "hub.E002" and "primary" in error.msg
    settings.UPSTREAM_KEYS = [new, *old]  # the new key first, the old still there: rotate
    before = stored_column("primary")
    assert run("rotate-keys") == "Re-encrypted 1 credential(s) with the first key\n"
    settings.UPSTREAM_KEYS = [new]
    assert stored_column("primary") != before
    assert credential_open(stored_column("primary")) == KEY
    assert upstream_credentials_check() == []


def test_the_admin_shows_the_hint_and_takes_a_new_key_write_only(admin_client, openai_model):
    console = admin_client
    add("--models", "gpt-image-1")
    upstream = Upstream.objects.get(name="primary")
    listing = console.get("/admin/upstreams/upstream/")
    page = console.get(f"/admin/upstreams/upstream/{quote(upstream.pk)}/change/")
    for response in (listing, page):
        assert response.status_code == 200
        assert "sk-…cdef" in response.content.decode()
        assert KEY not in response.content.decode()
    circuit = "closed" if settings.REDIS_URL else "?"  # its state is in Redis (upstreams.state)
    assert f'<td class="field-circuit">{circuit}</td>' in listing.content.decode()
    form = {
        "name": "primary",
        "adapter": "openai",
        "base_url": "https://llm.example.com/v1",
        "api_version": "",
        "api_key": "sk-replaced-key-9876543210fedcba",
        "priority": "1",
        "weight": "2",
        "concurrency": "",
        "images_per_minute": "",
        "enabled": "on",
        "routes-TOTAL_FORMS": "1",
        "routes-INITIAL_FORMS": "1",
        "routes-0-id": str(upstream.routes.get().pk),
        "routes-0-upstream": upstream.pk,
        "routes-0-model": "gpt-image-1",
        "routes-0-upstream_model": "",
    }
    response = console.post(f"/admin/upstreams/upstream/{quote(upstream.pk)}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    upstream.refresh_from_db()
    assert (upstream.credential_hint, upstream.priority, upstream.concurrency) == ("sk-…dcba", 1, None)
    assert credential_open(upstream.credential_encrypted) == "sk-replaced-key-9876543210fedcba"
    response = console.post(f"/admin/upstreams/upstream/{quote(upstream.pk)}/change/", {**form, "api_key": ""})
    assert response.status_code == 302  # blank keeps the stored key
    upstream.refresh_from_db()
    assert credential_open(upstream.credential_encrypted) == "sk-replaced-key-9876543210fedcba"
    response = console.post(
        "/admin/upstreams/upstream/",
        {"action": "disable", "_selected_action": [upstream.pk]},
    )
    assert response.status_code == 302
    assert not Upstream.objects.get(pk=upstream.pk).enabled


def test_a_model_served_by_an_upstream_is_not_refused_as_local(settings):
    from workers.checks import local_provider_check

    settings.ALLOW_LOCAL_PROVIDER = False
    settings.IMAGE_PROVIDER = "local"
    assert [error.id for error in local_provider_check()] == ["hub.E001"]  # gpt-image-2: backend blank
    add("--models", "gpt-image-2")
    assert local_provider_check() == []
