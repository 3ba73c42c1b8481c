"""Through the real API and a real Celery worker process (which consumes the housekeeping queue
too): a sync generation with a webhook ends in signed POSTs to a receiver on loopback."""

import uuid

import pytest
from django.test import override_settings
from standardwebhooks import Webhook

from generations.models import WebhookDelivery
from generations.webhooks import webhook_secret_get_or_create
from tests.conftest import OPENAI_TEST_KEY, WorkerProcess, until
from tests.reconcile import assert_reconciled
from tests.webhooks.receiver import Receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture
def own_worker(fake_openai):
    """A worker on queues of this test's own (the generation and its deliveries): the run's session
    worker may be busy with what earlier tests left it."""
    generations, housekeeping = f"e2e-gen-{uuid.uuid4().hex[:8]}", f"e2e-hk-{uuid.uuid4().hex[:8]}"
    env = {
        "HUB_GENERATIONS_QUEUE": generations,
        "HUB_HOUSEKEEPING_QUEUE": housekeeping,
        "OPENAI_BASE_URL": fake_openai.base_url,
        "OPENAI_API_KEY": OPENAI_TEST_KEY,
    }
    with override_settings(GENERATIONS_QUEUE=generations, HOUSEKEEPING_QUEUE=housekeeping):
        worker = WorkerProcess(name="e2e", queues=f"{generations},{housekeeping}", env_overrides=env).start()
        try:
            yield worker
        finally:
            worker.stop()


@pytest.mark.slow
def test_a_sync_generation_with_a_webhook_is_posted_signed(api, customer, own_worker):
    celery_worker = own_worker
    user, _, auth = customer
    with Receiver() as receiver:
        body = {
            "model": "gpt-image-2",
            "prompt": "a lighthouse",
            "size": "1024x1024",
            "quality": "low",
            "webhook_url": receiver.url,
            "webhook_events": ["started", "completed"],
        }
        response = api.post("/api/v1/images/generations", data=body, format="json", **auth)
        assert response.status_code == 200, response.content
        generation = response.json()
        done = WebhookDelivery.objects.filter(generation_id=generation["id"], status="succeeded")
        assert until(lambda: done.count() == 2, timeout=30), celery_worker.output()[-3000:]
    secret = webhook_secret_get_or_create(user=user).secret
    events = {}
    for received in receiver.received:
        payload = Webhook(secret).verify(received.body, received.headers)
        events[payload["type"]] = (payload, received.headers["webhook-id"])
    assert set(events) == {"generation.started", "generation.completed"}
    completed, webhook_id = events["generation.completed"]
    assert webhook_id == WebhookDelivery.objects.get(generation_id=generation["id"], event="completed").id
    assert completed["data"]["id"] == generation["id"] and completed["data"]["status"] == "succeeded"
    assert [image["id"] for image in completed["data"]["images"]] == [image["id"] for image in generation["images"]]
    assert events["generation.started"][0]["data"]["id"] == generation["id"]
    assert_reconciled()
