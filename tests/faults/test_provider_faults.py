"""Provider faults end in the right status, refund and message, without leaking secrets."""

import time

import pytest

from billing.models import CreditAccount
from generations.models import Generation
from generations.services import generation_enqueue
from tests.faults.conftest import wait_for_status
from tests.reconcile import assert_reconciled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
URL = "/api/v1/images/generations"


def test_provider_hanging_past_the_deadline_is_failed_and_refunded(
    api, customer, openai_model, fake_openai, celery_worker, settings
):
    settings.GENERATION_TIMEOUT_SECONDS = 7  # the provider gets 7 - 5 s finalize margin = 2 s
    user, _, auth = customer
    fake_openai.plan("slow", seconds=15)
    body = {"model": "gpt-image-1", "prompt": "p", "size": "1024x1024", "quality": "high", "n": 1}
    response = api.post(URL, data=body, format="json", **auth)
    assert response.status_code == 500
    assert "timed out" in response.json()["error"]["message"]
    assert CreditAccount.objects.get(user=user).balance == 120
    assert_reconciled()


def test_unreachable_provider_is_refunded_without_leaking_the_key(
    api, customer, openai_model, fake_openai, celery_worker
):
    fake_openai.plan("500", times=None)  # every attempt fails
    body = {"model": "gpt-image-1", "prompt": "p", "size": "1024x1024", "quality": "low", "n": 2}
    response = api.post(URL, data=body, format="json", **customer[2])
    assert response.status_code == 500
    assert "sk-test" not in response.content.decode()
    generation = Generation.objects.get(pk=response.json()["error"]["generation_id"])
    assert (generation.status, generation.error_code, generation.credits_refunded) == ("failed", "provider_error", 2)
    assert_reconciled()


def test_duplicate_delivery_calls_the_provider_once(api, customer, openai_model, fake_openai, celery_worker):
    fake_openai.plan("slow", seconds=1)
    body = {"model": "gpt-image-1", "prompt": "p", "size": "1024x1024", "quality": "low", "n": 2, "async": True}
    generation_id = api.post(URL, data=body, format="json", **customer[2]).json()["id"]
    generation_enqueue(generation_id=generation_id)  # a duplicate message while the first runs
    generation = wait_for_status(generation_id, ["succeeded", "failed"])
    generation_enqueue(generation_id=generation_id)  # a redelivery after it finished
    wait_for_status(generation_id, ["succeeded"])
    time.sleep(1.0)
    assert generation.status == "succeeded"
    assert len(fake_openai.requests) == 1
    assert generation.images.count() == 2
    assert_reconciled()
