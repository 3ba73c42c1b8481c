"""`stream: true`: the official OpenAI SDK, unchanged, iterates the hub's image stream — a
generation's and an edit's completed events with the image bytes and the provider's tokens; a
failure after the charge is an error event the SDK raises (refunded); a refusal before it keeps
its HTTP status."""

import base64
import io

import openai
import pytest

from billing.models import CreditAccount
from generations.models import Generation
from tests.api.test_openai_sdk_dropin import PNG, sdk
from tests.images import image_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
BODY = {"model": "gpt-image-2", "size": "1024x1024", "quality": "low"}


def test_the_sdk_iterates_a_streamed_generation(live_server, customer, celery_worker):
    user, raw, _ = customer
    stream = sdk(live_server, raw).images.generate(**BODY, prompt="a lighthouse", n=2, stream=True, partial_images=2)
    events = list(stream)
    assert [event.type for event in events] == ["image_generation.completed"] * 2
    assert all(base64.b64decode(event.b64_json).startswith(PNG) for event in events)
    assert (events[0].size, events[0].quality, events[0].output_format) == ("1024x1024", "low", "png")
    assert events[0].usage.total_tokens == 0  # the local provider reports no tokens
    generation = Generation.objects.get(owner=user)
    assert generation.status == "succeeded" and generation.images.count() == 2  # stored as any


def test_the_sdk_iterates_a_streamed_edit(live_server, customer, celery_worker):
    _, raw, _ = customer
    image = io.BytesIO(image_bytes(color=(0, 200, 0)))
    image.name = "a.png"
    events = list(sdk(live_server, raw).images.edit(**BODY, image=[image], prompt="greener", stream=True))
    assert [event.type for event in events] == ["image_edit.completed"]
    assert base64.b64decode(events[0].b64_json).startswith(PNG)


def test_the_completed_event_carries_the_tokens_the_provider_reported(
    live_server, customer, openai_model, fake_openai, celery_worker
):
    _, raw, _ = customer
    (event,) = list(sdk(live_server, raw).images.generate(**{**BODY, "model": "gpt-image-1"}, prompt="x", stream=True))
    (request,) = fake_openai.requests
    reported = request.response_usage
    assert (event.usage.input_tokens, event.usage.output_tokens, event.usage.total_tokens) == (
        reported["input_tokens"],
        reported["output_tokens"],
        reported["total_tokens"],
    )
    assert event.usage.to_dict() == {**reported, "credits": 1}


def test_a_failure_after_the_charge_is_an_error_event_and_refunded(live_server, customer, celery_worker):
    user, raw, _ = customer
    balance = CreditAccount.objects.get(user=user).balance
    with pytest.raises(openai.APIError) as failed:
        list(sdk(live_server, raw).images.generate(**BODY, prompt="doomed [fail]", stream=True))
    assert failed.value.body["code"] == "generationFailed"
    assert failed.value.body["generation_id"] == Generation.objects.get(owner=user).pk
    assert CreditAccount.objects.get(user=user).balance == balance  # refunded


def test_a_refusal_before_the_charge_keeps_its_status(live_server, customer):
    _, raw, _ = customer
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(live_server, raw).images.generate(**BODY, prompt="x", n=9, stream=True)
    assert refused.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(live_server, raw).images.generate(**BODY, prompt="x", stream=True, partial_images=4)
    assert refused.value.body["param"] == "partial_images"
    assert not Generation.objects.exists()
