"""`stream: true`: the official OpenAI SDK, unchanged, iterates the hub's image stream — a
generation's and an edit's partial images as the provider makes them, then the completed events
with the image bytes and the provider's tokens; a failure after the charge is an error event the
SDK raises (refunded); a refusal before it keeps its HTTP status."""

import base64
import io
import time

import httpx
import openai
import pytest

from billing.models import CreditAccount
from generations.models import Generation
from hub.infra import storage
from tests.api.test_generation_events import read_events
from tests.api.test_openai_sdk_dropin import PNG, sdk
from tests.conftest import relays_partials
from tests.images import image_bytes
from tests.reconcile import assert_reconciled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
BODY = {"model": "gpt-image-2", "size": "1024x1024", "quality": "low"}


@relays_partials
def test_the_sdk_iterates_a_streamed_generation(live_server, customer, celery_worker):
    user, raw, _ = customer
    stream = sdk(live_server, raw).images.generate(**BODY, prompt="a lighthouse", n=2, stream=True, partial_images=2)
    events = list(stream)
    partial, completed = "image_generation.partial_image", "image_generation.completed"
    assert [event.type for event in events] == [partial] * 4 + [completed] * 2  # each image's two, then the end
    assert [event.partial_image_index for event in events[:4]] == [0, 0, 1, 1]
    assert all(base64.b64decode(event.b64_json).startswith(PNG) for event in events)
    for event in (events[0], events[-1]):
        assert (event.size, event.quality, event.background, event.output_format) == ("1024x1024", "low", "auto", "png")
        assert abs(event.created_at - time.time()) < 60
    assert events[-1].usage.total_tokens == 0  # the local provider reports no tokens
    generation = Generation.objects.get(owner=user)
    assert generation.status == "succeeded" and generation.images.count() == 2  # stored as any, partials not
    assert generation.partial_images == 2


@relays_partials
def test_the_sdk_iterates_a_streamed_edit(live_server, customer, celery_worker):
    _, raw, _ = customer
    image = io.BytesIO(image_bytes(color=(0, 200, 0)))
    image.name = "a.png"
    events = list(
        sdk(live_server, raw).images.edit(**BODY, image=[image], prompt="greener", stream=True, partial_images=1)
    )
    assert [event.type for event in events] == ["image_edit.partial_image", "image_edit.completed"]
    assert events[0].partial_image_index == 0
    assert all(base64.b64decode(event.b64_json).startswith(PNG) for event in events)


@relays_partials
def test_a_streamed_multipart_generation_has_its_partials(live_server, customer, celery_worker):
    _, raw, _ = customer
    auth = {"Authorization": f"Bearer {raw}"}
    form = {**BODY, "prompt": "with a reference", "stream": "true", "partial_images": "3"}
    files = [("reference_image", ("a.png", image_bytes(color=(0, 0, 200)), "image/png"))]
    url = f"{live_server.url}/api/v1/images/generations"
    with httpx.stream("POST", url, data=form, files=files, headers=auth, timeout=60) as response:
        assert response.status_code == 200
        events = [e for e in read_events(response.iter_lines()) if "event" in e]
    assert [e["event"] for e in events] == ["image_generation.partial_image"] * 3 + ["image_generation.completed"]
    assert [e["data"]["partial_image_index"] for e in events[:3]] == [0, 1, 2]


@relays_partials
def test_partials_arrive_as_the_provider_makes_them(live_server, customer, celery_worker):
    """The local provider's partials come at a third and two thirds of its 3 s, not with the end."""
    _, raw, _ = customer
    stream = sdk(live_server, raw).images.generate(**BODY, prompt="slowly [sleep:3]", stream=True, partial_images=2)
    arrived = [(event.type, time.monotonic()) for event in stream]
    assert [kind for kind, _ in arrived] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    (_, first), (_, second), (_, end) = arrived
    assert end - first > 1.5 and end - second > 0.5


@relays_partials
def test_the_providers_partials_are_relayed_as_it_streamed_them(
    live_server, customer, openai_model, fake_openai, celery_worker
):
    """Through the OpenAI adapter: the fake provider streams (its latency 2 s), the hub relays its
    partials byte for byte before its completed images, and stores the final ones as any."""
    user, raw, _ = customer
    balance = CreditAccount.objects.get(user=user).balance
    fake_openai.plan("slow", seconds=2)
    body = {**BODY, "model": "gpt-image-1"}
    arrived = [
        (event, time.monotonic())
        for event in sdk(live_server, raw).images.generate(**body, prompt="x", n=2, stream=True, partial_images=2)
    ]
    (sent,) = fake_openai.requests
    assert sent.body["stream"] is True and sent.body["partial_images"] == 2
    events = [event for event, _ in arrived]
    assert [event.type for event in events] == ["image_generation.partial_image"] * 4 + [
        "image_generation.completed"
    ] * 2
    assert [base64.b64decode(event.b64_json) for event in events[:4]] == sent.response_partials
    assert [base64.b64decode(event.b64_json) for event in events[4:]] == sent.response_images
    assert arrived[-1][1] - arrived[0][1] > 1  # the first partial a second before the end
    generation = Generation.objects.get(owner=user)
    stored = [storage.object_read(image.storage_key) for image in generation.images.all()]
    assert stored == sent.response_images  # the final images, as without a stream
    assert CreditAccount.objects.get(user=user).balance == balance - generation.credits_requested
    assert generation.provider_usage == sent.response_usage
    assert_reconciled()


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


@relays_partials
@pytest.mark.parametrize("model", ["gpt-image-2", "gpt-image-1"])
def test_a_failure_after_partials_is_an_error_event_and_refunded(
    live_server, customer, openai_model, fake_openai, celery_worker, model
):
    """The provider sent its partials, then failed (the local provider's `[fail]` after its
    `[sleep]`; the fake's stream ending in an error event): the partials came, then the error."""
    user, raw, _ = customer
    balance = CreditAccount.objects.get(user=user).balance
    fake_openai.plan("stream_error", times=None)
    events = []
    with pytest.raises(openai.APIError) as failed:
        stream = sdk(live_server, raw).images.generate(
            **{**BODY, "model": model}, prompt="doomed [sleep:1] [fail]", stream=True, partial_images=2
        )
        events.extend(stream)
    assert [event.type for event in events] == ["image_generation.partial_image"] * 2
    assert failed.value.body["code"] == "generationFailed"
    generation = Generation.objects.get(owner=user)
    assert failed.value.body["generation_id"] == generation.pk and generation.images.count() == 0
    assert CreditAccount.objects.get(user=user).balance == balance  # refunded
    assert_reconciled()


def test_a_refusal_before_the_charge_keeps_its_status(live_server, customer):
    _, raw, _ = customer
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(live_server, raw).images.generate(**BODY, prompt="x", n=9, stream=True)
    assert refused.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(live_server, raw).images.generate(**BODY, prompt="x", stream=True, partial_images=4)
    assert refused.value.body["param"] == "partial_images"
    assert not Generation.objects.exists()
