"""The fence every fast path shares (hub/infra/fastpaths): the switches, and the step aside, with one
warning line, when the installed library is not the version the path was checked against."""

import importlib.metadata
import logging
import os
import subprocess

import pytest
from django.test import override_settings

import hub.infra.fastpaths
from generations.models import Generation
from hub.compiled import STR_MARKER, CompiledQuery
from hub.infra.fastpaths import FastPath, _library_checked, _on
from hub.infra.fastpaths.orm_rows import ORM_ROWS
from tests.conftest import HUB_PYTHON, ROOT
from tests.factories import create_generation, make_user
from tests.fastpaths.conftest import fast_path

NAMES = [
    "ORM_ROWS",
    "TASK_MESSAGE",
    "REDIS_CLIENT",
    "BROKER_WAITS",
    "KOMBU_POLL",
    "PG_WAIT",
    "S3_PUT",
    "S3_PRESIGN",
    "OPENAI_POST",
]


def _paths() -> list[FastPath]:
    from hub.infra.fastpaths import (
        broker_waits,
        kombu_poll,
        openai_post,
        orm_rows,
        pg_wait,
        redis_client,
        s3_presign,
        s3_put,
        task_message,
    )

    return [
        module.__dict__[name]
        for module, name in (
            (orm_rows, "ORM_ROWS"),
            (task_message, "TASK_MESSAGE"),
            (redis_client, "REDIS_CLIENT"),
            (broker_waits, "BROKER_WAITS"),
            (kombu_poll, "KOMBU_POLL"),
            (pg_wait, "PG_WAIT"),
            (s3_put, "S3_PUT"),
            (s3_presign, "S3_PRESIGN"),
            (openai_post, "OPENAI_POST"),
        )
    ]


def test_every_path_was_checked_against_the_installed_library_and_is_on():
    paths = _paths()
    assert [path.name for path in paths] == NAMES
    for path in paths:
        assert importlib.metadata.version(path.library) == path.checked, path
        assert path.on()


def test_the_master_switch_turns_every_path_off_and_each_switch_its_own():
    with override_settings(FAST_PATHS=False):
        assert not any(path.on() for path in _paths())
    for name in NAMES:
        with fast_path(name, False):
            assert [path.name for path in _paths() if not path.on()] == [name]


@pytest.fixture
def fresh_checks():
    _library_checked.cache_clear()
    _on.cache_clear()
    yield
    _library_checked.cache_clear()
    _on.cache_clear()


def test_another_library_version_takes_the_librarys_way_with_one_warning(fresh_checks, monkeypatch, caplog, db):
    """Django 5.2.19 was checked; as if another were installed, a compiled query is its queryset
    (Django compiles and iterates it), and the process says so once."""
    real = importlib.metadata.version
    monkeypatch.setattr(
        hub.infra.fastpaths.importlib.metadata,
        "version",
        lambda name: "9.9.9" if name == "django" else real(name),
    )
    generation = create_generation(make_user(credits=10))
    query = CompiledQuery(lambda pk: Generation.objects.filter(pk=pk), STR_MARKER)
    built = []
    monkeypatch.setattr(query, "_build", lambda pk, build=query._build: built.append(pk) or build(pk))
    with caplog.at_level(logging.WARNING, logger="hub.infra.fastpaths"):
        for _ in range(3):
            assert query.all(generation.pk) == [generation]
        assert not ORM_ROWS.on()
    assert built == [generation.pk] * 3  # the library's way: the queryset, every time
    lines = [record.getMessage() for record in caplog.records if record.name == "hub.infra.fastpaths"]
    assert lines == [
        "fast path ORM_ROWS off: it was checked against django 5.2.19, 9.9.9 is installed; taking django's own way"
    ]


def test_a_library_that_is_not_installed_turns_its_path_off(fresh_checks, caplog):
    path = FastPath("ORM_ROWS", "no-such-distribution-hub", "1.0")
    with caplog.at_level(logging.WARNING, logger="hub.infra.fastpaths"):
        assert not path.on() and not path.on()
    assert len([r for r in caplog.records if r.name == "hub.infra.fastpaths"]) == 1


@pytest.mark.parametrize("name", ["HUB_FAST_PATHS", "HUB_FAST_PATH_S3_PUT"])
def test_a_switch_that_is_not_a_boolean_stops_start_up(name):
    done = subprocess.run(
        [HUB_PYTHON, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "hub.settings", name: "maybe"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"{name}='maybe' is not a boolean" in done.stderr
