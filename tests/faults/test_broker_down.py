"""No charge without a job: a web process whose broker is unreachable."""

import httpx
import pytest

from billing.models import CreditAccount
from generations import sweeper
from generations.models import Generation
from tests.conftest import WebProcess
from tests.faults.conftest import wait_for_status
from tests.reconcile import assert_reconciled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
BODY = {"model": "gpt-image-2", "prompt": "p", "size": "1024x1024", "quality": "high", "n": 1}


@pytest.fixture
def web_without_broker():
    """A real web process (deploy/bin/web) whose Celery broker points at a closed port."""
    web = WebProcess(env_overrides={"CELERY_BROKER_URL": "redis://127.0.0.1:9/0"}).start()
    yield web.base_url
    web.stop()


def test_sync_request_gets_a_clear_error_and_its_credits_back(customer, web_without_broker):
    user, raw, _ = customer
    response = httpx.post(
        f"{web_without_broker}/api/v1/images/generations",
        json=BODY,
        headers={"Authorization": f"Bearer {raw}"},
        timeout=60,
    )
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "generationFailed"
    assert "queue is unavailable" in error["message"]
    generation = Generation.objects.get(pk=error["generation_id"])
    assert (generation.status, generation.error_code) == ("failed", "queue_unavailable")
    assert CreditAccount.objects.get(user=user).balance == 120
    assert_reconciled()


def test_async_request_is_kept_and_sent_by_the_sweeper_later(customer, web_without_broker, celery_worker, monkeypatch):
    user, raw, _ = customer
    response = httpx.post(
        f"{web_without_broker}/api/v1/images/generations",
        json={**BODY, "async": True},
        headers={"Authorization": f"Bearer {raw}"},
        timeout=60,
    )
    assert response.status_code == 202
    generation = Generation.objects.get(pk=response.json()["id"])
    assert (generation.status, generation.enqueued_at) == ("queued", None)  # persisted, not lost
    assert CreditAccount.objects.get(user=user).balance == 112

    monkeypatch.setattr(sweeper, "UNSENT_GRACE", sweeper.timedelta(0))
    assert sweeper.generations_sweep().sent == [generation.id]  # this process's broker is up
    generation = wait_for_status(generation.id, ["succeeded", "failed"])
    assert generation.status == "succeeded"
    assert_reconciled()
