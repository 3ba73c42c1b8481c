"""A catalog row with backend `openai` goes through the real adapter in a real worker process
to a local server speaking the OpenAI images protocol."""

import pytest

from billing.models import CreditAccount
from generations.reconcile import reconcile

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
URL = "/api/v1/images/generations"


def test_second_model_is_served_by_the_openai_adapter(api, customer, openai_model, fake_openai, celery_worker):
    _, _, auth = customer
    body = {"model": "gpt-image-1", "prompt": "a lighthouse", "size": "1536x1024", "quality": "medium", "n": 2}
    response = api.post(URL, data=body, format="json", **auth)
    assert response.status_code == 200, response.content
    (request,) = fake_openai.requests
    # the credits, and the tokens the provider said it used (OpenAI's usage)
    assert response.json()["usage"] == {"credits": 6, "credits_requested": 6, **request.response_usage}
    assert request.path == "/v1/images/generations"
    assert request.headers["authorization"] == "Bearer sk-test-hub-0123456789"
    assert {k: request.body[k] for k in ("model", "prompt", "size", "quality", "n")} == {
        "model": "gpt-image-1",
        "prompt": "a lighthouse",
        "size": "1536x1024",
        "quality": "medium",
        "n": 2,
    }
    assert len(response.json()["images"]) == 2
    assert reconcile() == []


def test_provider_rejection_is_refunded_with_the_providers_reason(
    api, customer, openai_model, fake_openai, celery_worker
):
    user, _, auth = customer
    fake_openai.plan("400", message="Your prompt was rejected by the safety system")
    body = {"model": "gpt-image-1", "prompt": "something", "size": "1024x1024", "quality": "high", "n": 1}
    response = api.post(URL, data=body, format="json", **auth)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "generationFailed"
    assert "rejected by the safety system" in error["message"]
    assert "sk-test" not in response.content.decode()
    assert CreditAccount.objects.get(user=user).balance == 120
    assert len(fake_openai.requests) == 1  # a 4xx is never retried
    assert reconcile() == []


def test_fewer_images_than_asked_refunds_the_rest(api, customer, openai_model, fake_openai, celery_worker):
    user, _, auth = customer
    fake_openai.plan("fewer", count=1)
    body = {"model": "gpt-image-1", "prompt": "p", "size": "1024x1024", "quality": "high", "n": 3}
    response = api.post(URL, data=body, format="json", **auth)
    assert response.status_code == 200
    (request,) = fake_openai.requests
    credits = {"credits": 6, "credits_requested": 18, "credits_refunded": 12}
    assert response.json()["usage"] == {**credits, **request.response_usage}
    assert CreditAccount.objects.get(user=user).balance == 114


def test_transient_errors_are_retried(api, customer, openai_model, fake_openai, celery_worker):
    fake_openai.plan("500", times=1).plan("429", retry_after=0)
    body = {"model": "gpt-image-1", "prompt": "p", "size": "1024x1024", "quality": "low", "n": 1}
    response = api.post(URL, data=body, format="json", **customer[2])
    assert response.status_code == 200
    assert [r.status for r in fake_openai.requests] == [500, 429, 200]
