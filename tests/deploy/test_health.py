"""/healthz: alive, touching nothing. /readyz: database, broker and storage reachable, or 503
naming what is not — checked against real dead endpoints, not stubs."""

import json

import pytest
from django.conf import settings
from django.db import connection
from django.test import RequestFactory, override_settings

from hub.celery import app
from hub.http import health
from hub.infra import shutdown
from hub.infra.singletons import per_process
from tests.conftest import free_port


def readyz() -> tuple[int, dict]:
    response = health.readyz(RequestFactory().get("/readyz"))
    return response.status_code, json.loads(response.content)


def test_healthz_answers_without_touching_any_dependency(client):
    # No django_db mark: a query here would fail the test ("Database access not allowed").
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ok_when_database_broker_and_storage_answer():
    status, body = readyz()
    assert (status, body) == (200, {"status": "ok", "checks": {"database": "ok", "broker": "ok", "storage": "ok"}})


@pytest.mark.django_db
def test_readyz_names_an_unreachable_broker(monkeypatch):
    if not settings.REDIS_URL:
        pytest.skip("the embedded broker is a folder: it cannot be unreachable")
    monkeypatch.setattr(app.conf, "broker_url", f"redis://127.0.0.1:{free_port()}/0")
    status, body = readyz()
    assert status == 503
    assert body["failed"] == ["broker"]
    assert body["checks"] == {"database": "ok", "broker": "unreachable", "storage": "ok"}


@pytest.mark.django_db
def test_readyz_names_an_unreachable_object_store(monkeypatch):
    monkeypatch.setattr(health, "_s3_client", per_process(health._s3_client.__wrapped__))  # built for this endpoint
    dead = f"http://127.0.0.1:{free_port()}"
    with override_settings(USE_S3=True, AWS_STORAGE_BUCKET_NAME="hub-readyz", AWS_S3_ENDPOINT_URL=dead):
        status, body = readyz()
    assert (status, body["failed"]) == (503, ["storage"])


@pytest.mark.django_db
def test_readyz_names_an_unreachable_database(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("the embedded SQLite database cannot be unreachable")
    monkeypatch.setitem(connection.settings_dict, "PORT", str(free_port()))
    status, body = readyz()
    assert (status, body["failed"]) == (503, ["database"])
    # The reason is logged, never answered: it may name internal hosts.
    assert body["checks"]["database"] == "unreachable"


def test_readyz_answers_503_while_the_process_stops(monkeypatch):
    monkeypatch.setattr(shutdown, "_stop_at", 0.0)
    status, body = readyz()
    assert (status, body["status"]) == (503, "stopping")
