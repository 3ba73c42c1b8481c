"""The official OpenAI SDK, unchanged, against the live hub: b64_json, edits, models.retrieve,
informative errors, and safe retries (Idempotency-Key, x-should-retry)."""

import base64
import contextlib
import io

import openai
import pytest

from billing.models import CreditAccount
from generations.models import Generation
from tests.factories import make_key, make_user
from tests.images import image_bytes
from tests.reconcile import assert_reconciled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
PNG = b"\x89PNG\r\n\x1a\n"


def sdk(live_server, raw_key, **options):
    return openai.OpenAI(base_url=f"{live_server.url}/api/v1", api_key=raw_key, **{"max_retries": 0, **options})


def test_b64_json_returns_the_image_bytes(live_server, customer, celery_worker):
    _, raw, _ = customer
    result = sdk(live_server, raw).images.generate(
        model="gpt-image-2", prompt="b64", size="1024x1024", quality="low", response_format="b64_json"
    )
    assert base64.b64decode(result.data[0].b64_json).startswith(PNG)


def test_images_edit_sends_the_images_as_references_and_bills_like_a_generation(live_server, customer, celery_worker):
    user, raw, _ = customer
    images = [io.BytesIO(image_bytes(color=(0, 200, 0))), io.BytesIO(image_bytes("JPEG", color=(0, 0, 200)))]
    images[0].name, images[1].name = "a.png", "b.jpg"
    result = sdk(live_server, raw).images.edit(
        model="gpt-image-2", image=images, prompt="merge them", size="1024x1024", quality="low"
    )
    assert result.data[0].url
    generation = Generation.objects.get(owner=user)
    assert (generation.status, generation.reference_count) == ("succeeded", 2)
    assert CreditAccount.objects.get(user=user).balance == 120 - 2
    one = io.BytesIO(image_bytes())
    one.name = "one.png"
    single = sdk(live_server, raw).images.edit(model="gpt-image-2", image=one, prompt="one image", quality="low")
    assert single.data[0].url


def test_images_edit_refuses_a_mask_and_requires_an_image(live_server, customer):
    _, raw, _ = customer
    image, mask = io.BytesIO(image_bytes()), io.BytesIO(image_bytes())
    image.name, mask.name = "i.png", "m.png"
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(live_server, raw).images.edit(model="gpt-image-2", image=image, mask=mask, prompt="x")
    assert (refused.value.body["param"], refused.value.response.headers["x-should-retry"]) == ("mask", "false")


def test_models_retrieve(live_server, customer):
    _, raw, _ = customer
    client = sdk(live_server, raw)
    assert client.models.retrieve("gpt-image-2").id == "gpt-image-2"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_errors_carry_type_and_param_and_are_not_retried(live_server, customer):
    _, raw, _ = customer
    client = sdk(live_server, raw, max_retries=2)
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(model="gpt-image-2", prompt="x", n=9)
    assert bad.value.body == {
        "message": "'n' must be between 1 and 4",
        "code": "invalid_request",
        "type": "invalid_request_error",
        "param": "n",
    }
    with pytest.raises(openai.APIStatusError) as poor:
        sdk(live_server, make_key(make_user())).images.generate(model="gpt-image-2", prompt="x", quality="high")
    assert (poor.value.status_code, poor.value.body["code"]) == (402, "insufficientCredits")
    assert poor.value.response.headers["x-should-retry"] == "false"


def test_sdk_retries_after_a_timeout_charge_once_with_an_idempotency_key(live_server, customer, celery_worker):
    """The SDK retries a timed-out call twice by default: without a key that is three paid
    generations; with one Idempotency-Key it is one."""
    user, raw, _ = customer
    client = sdk(live_server, raw, timeout=1.0, max_retries=2)
    body = {"model": "gpt-image-2", "prompt": "slow [sleep:3]", "size": "1024x1024", "quality": "low"}
    with pytest.raises(openai.APITimeoutError):
        client.images.generate(**body)
    assert Generation.objects.filter(owner=user).count() == 3  # the problem, reproduced

    # The SDK's last retry may already find the generation finished and get its answer.
    with contextlib.suppress(openai.APITimeoutError):
        client.images.generate(**{**body, "prompt": "keyed [sleep:3]"}, extra_headers={"Idempotency-Key": "job-42"})
    keyed = Generation.objects.filter(owner=user, prompt="keyed [sleep:3]")
    assert keyed.count() == 1
    # A later retry with the key (and a patient timeout) gets that same generation's result.
    patient = sdk(live_server, raw, timeout=60)
    result = patient.images.generate(
        **{**body, "prompt": "keyed [sleep:3]"}, extra_headers={"Idempotency-Key": "job-42"}
    )
    assert result.data[0].url and keyed.count() == 1
    assert CreditAccount.objects.get(user=user).balance == 120 - 4 * 2
    with pytest.raises(openai.ConflictError) as conflict:
        patient.images.generate(**{**body, "prompt": "another"}, extra_headers={"Idempotency-Key": "job-42"})
    assert conflict.value.body["code"] == "idempotencyConflict"
    assert conflict.value.response.headers["x-should-retry"] == "false"
    assert_reconciled()
