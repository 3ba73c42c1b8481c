"""OpenAI's image options through the official SDK, against the live hub and a real worker:
what reaches the provider, what is stored (the S3 object's type and bytes), what comes back; the
mask's checks; a model that does not offer an option; the worker's check of what came back."""

import io

import httpx
import openai
import pytest
from PIL import Image

from billing.models import CreditAccount
from generations.models import GeneratedImage, Generation, ImageModel
from generations.options import ALL_OPTIONS
from tests.images import image_bytes
from tests.reconcile import assert_reconciled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
SIZE = (64, 48)  # the edits' images


def sdk(live_server, raw_key):
    return openai.OpenAI(base_url=f"{live_server.url}/api/v1", api_key=raw_key, max_retries=0)


@pytest.fixture
def offered(openai_model):
    """gpt-image-1, served by the openai adapter (the fake provider), offering every option."""
    ImageModel.objects.filter(pk=openai_model.pk).update(options=ALL_OPTIONS)
    return openai_model


def stored(url: str) -> tuple[str, Image.Image, bytes]:
    """What a client downloads from an image URL: its Content-Type (the S3 object's), the image."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return response.headers["content-type"], image, response.content


def named(name: str, data: bytes) -> io.BytesIO:
    file = io.BytesIO(data)
    file.name = name
    return file


def rgba_png(size=SIZE, alpha=0) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, (0, 0, 0, alpha)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    "asked, fmt, content_type, ext, mode",
    [
        (
            {"output_format": "webp", "background": "transparent", "output_compression": 40},
            "WEBP",
            "image/webp",
            "webp",
            "RGBA",
        ),
        (
            {"output_format": "jpeg", "background": "opaque", "output_compression": 30},
            "JPEG",
            "image/jpeg",
            "jpg",
            "RGB",
        ),
        ({"output_format": "png", "background": "transparent"}, "PNG", "image/png", "png", "RGBA"),
    ],
)
def test_generate_options_reach_the_provider_and_shape_the_stored_image(
    live_server, customer, offered, fake_openai, celery_worker, asked, fmt, content_type, ext, mode
):
    user, raw, _ = customer
    ids = {"moderation": "low", "user": "end-user-7", "safety_identifier": "sid-7"}
    result = sdk(live_server, raw).images.generate(
        model="gpt-image-1", prompt="a fox", size="1024x1024", quality="low", **asked, **ids
    )
    (request,) = fake_openai.requests
    assert request.path == "/v1/images/generations"
    assert {name: request.body.get(name) for name in {**asked, **ids}} == {**asked, **ids}
    assert (result.output_format, result.background, result.size) == (
        asked["output_format"],
        asked["background"],
        "1024x1024",
    )
    assert result.quality == "1K"  # the contract's resolution tier (docs/api.md)
    (image,) = GeneratedImage.objects.filter(generation__owner=user)
    assert (image.content_type, image.storage_key.rsplit(".", 1)[1]) == (content_type, ext)
    assert result.data[0].url.split("?")[0].endswith(f".{ext}")
    served_type, decoded, data = stored(result.data[0].url)
    assert (served_type, decoded.format, decoded.size, decoded.mode) == (content_type, fmt, (1024, 1024), mode)
    assert data == request.response_images[0]  # stored as the provider sent it, never re-encoded
    assert CreditAccount.objects.get(user=user).balance == 120 - 1
    assert_reconciled()


def test_the_local_provider_renders_every_format_and_a_transparent_background(live_server, customer, celery_worker):
    _, raw, _ = customer
    client = sdk(live_server, raw)
    for asked, fmt, mode in [
        ({"output_format": "webp", "background": "transparent"}, "WEBP", "RGBA"),
        ({"output_format": "jpeg", "output_compression": 10}, "JPEG", "RGB"),
        ({"background": "transparent"}, "PNG", "RGBA"),
    ]:
        result = client.images.generate(model="gpt-image-2", prompt="local", size="1024x1024", quality="low", **asked)
        content_type, image, _ = stored(result.data[0].url)
        assert (content_type, image.format, image.mode) == (f"image/{fmt.lower()}", fmt, mode)
        if mode == "RGBA":
            assert image.getextrema()[3] == (0, 255)  # some pixels clear, some not


def test_the_answer_carries_the_tokens_the_provider_reported(
    live_server, customer, openai_model, fake_openai, celery_worker
):
    """OpenAI's `usage` of the call that made the images, beside the contract's credits: in the
    SDK's answer and in a later poll. The local provider reports none: credits only."""
    _, raw, _ = customer
    client = sdk(live_server, raw)
    result = client.images.edit(
        model="gpt-image-1",
        image=named("i.png", image_bytes(size=SIZE)),
        prompt="a fox at dusk",
        n=2,
        size="1024x1024",
        quality="low",
    )
    (request,) = fake_openai.requests
    reported = request.response_usage
    usage = result.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (
        reported["input_tokens"],
        reported["output_tokens"],
        reported["total_tokens"],
    )
    details = (usage.input_tokens_details.text_tokens, usage.input_tokens_details.image_tokens)
    assert details == (
        reported["input_tokens_details"]["text_tokens"],
        reported["input_tokens_details"]["image_tokens"],
    )
    assert min(details) > 0 and usage.output_tokens > 0  # the prompt, the reference, the two images
    assert usage.to_dict() == {"credits": 2, "credits_requested": 2, **reported}
    poll = httpx.get(
        f"{live_server.url}/api/v1/generations/{result.id}", headers={"Authorization": f"Bearer {raw}"}, timeout=10
    )
    assert poll.json()["usage"] == {"credits": 2, "credits_requested": 2, **reported}
    local = client.images.generate(model="gpt-image-2", prompt="local", size="1024x1024", quality="low")
    assert set(local.usage.to_dict()) == {"credits", "credits_requested"}


def test_jpeg_compression_is_the_one_asked(live_server, customer, celery_worker):
    _, raw, _ = customer
    client = sdk(live_server, raw)
    sizes = [
        len(stored(client.images.generate(model="gpt-image-2", prompt="same", quality="low", **asked).data[0].url)[2])
        for asked in ({"output_format": "jpeg", "output_compression": 5}, {"output_format": "jpeg"})
    ]
    assert sizes[0] * 2 < sizes[1]  # 5 % against OpenAI's default of 100


def test_edit_sends_mask_and_input_fidelity_through_the_sdk_path(
    live_server, customer, offered, fake_openai, celery_worker
):
    _, raw, _ = customer
    result = sdk(live_server, raw).images.edit(
        model="gpt-image-1",
        image=named("i.png", image_bytes(size=SIZE)),
        mask=named("m.png", rgba_png()),
        prompt="only the sky",
        size="1024x1024",
        quality="low",
        input_fidelity="high",
        output_format="webp",
        output_compression=70,
        background="opaque",
        user="end-user-8",
    )
    (request,) = fake_openai.requests
    assert request.path == "/v1/images/edits"
    assert request.file_fields == ["image[]", "mask"]
    sent = {name: request.body[name] for name in ("input_fidelity", "output_format", "output_compression", "user")}
    assert sent == {"input_fidelity": "high", "output_format": "webp", "output_compression": "70", "user": "end-user-8"}
    mask = Image.open(io.BytesIO(request.mask_part))
    assert (mask.format, mask.mode, mask.size) == ("PNG", "RGBA", SIZE)
    assert stored(result.data[0].url)[0] == "image/webp"


@pytest.mark.parametrize(
    "mask, message",
    [
        (image_bytes("JPEG", size=SIZE), "must be a PNG image with an alpha channel"),
        (image_bytes("PNG", size=SIZE), "must be a PNG image with an alpha channel"),  # no alpha
        (rgba_png(size=(32, 32)), "must be the first image's size, 64x48"),
        (b"", "The mask is empty"),
        (b"\x89PNG\r\n\x1a\n not really", "must be a PNG image with an alpha channel"),
    ],
)
def test_a_bad_mask_is_refused_and_charges_nothing(live_server, customer, mask, message):
    user, raw, _ = customer
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(live_server, raw).images.edit(
            model="gpt-image-2", image=named("i.png", image_bytes(size=SIZE)), mask=named("m.png", mask), prompt="x"
        )
    assert refused.value.body["param"] == "mask"
    assert message in refused.value.body["message"]
    assert not Generation.objects.filter(owner=user).exists()
    assert CreditAccount.objects.get(user=user).balance == 120


def test_a_mask_counts_toward_the_pixel_limit_before_anything_is_decoded(live_server, customer, settings):
    settings.REFERENCE_IMAGE_MAX_TOTAL_PIXELS = SIZE[0] * SIZE[1] + 10
    _, raw, _ = customer
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(live_server, raw).images.edit(
            model="gpt-image-2",
            image=named("i.png", image_bytes(size=SIZE)),
            mask=named("m.png", rgba_png()),
            prompt="x",
        )
    assert (refused.value.body["param"], "too large together" in refused.value.body["message"]) == ("mask", True)


def test_a_mask_needs_an_image_and_a_form(api, customer):
    _, _, auth = customer
    body = {"model": "gpt-image-2", "prompt": "x", "mask": named("m.png", rgba_png())}
    form = api.post("/api/v1/images/generations", data=body, format="multipart", **auth)
    assert (form.status_code, form.json()["error"]["param"]) == (400, "mask")
    as_json = api.post("/api/v1/images/generations", data={**body, "mask": "m.png"}, format="json", **auth)
    assert (as_json.status_code, as_json.json()["error"]["param"]) == (400, "mask")


def test_an_option_the_model_does_not_offer_is_refused_and_charges_nothing(
    live_server, customer, openai_model, fake_openai
):
    user, raw, _ = customer
    client = sdk(live_server, raw)
    with pytest.raises(openai.BadRequestError) as refused:  # gpt-image-1's row offers no option
        client.images.generate(model="gpt-image-1", prompt="x", size="1024x1024", quality="low", background="opaque")
    assert refused.value.body == {
        "message": "background is not supported by gpt-image-1",
        "code": "invalid_request",
        "type": "invalid_request_error",
        "param": "background",
    }
    ImageModel.objects.filter(pk=openai_model.pk).update(options={"background": ["opaque"], "user": True})
    with pytest.raises(openai.BadRequestError) as value:
        client.images.generate(
            model="gpt-image-1", prompt="x", size="1024x1024", quality="low", background="transparent", user="u"
        )
    assert value.value.body["param"] == "background"
    assert "supported: opaque" in value.value.body["message"]
    assert not Generation.objects.filter(owner=user).exists()
    assert CreditAccount.objects.get(user=user).balance == 120
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    "body, param",
    [
        ({"output_compression": 101, "output_format": "jpeg"}, "output_compression"),
        ({"output_compression": "50", "output_format": "jpeg"}, "output_compression"),  # JSON keeps its types
        ({"output_compression": 50}, "output_compression"),  # png has no compression
        ({"background": "transparent", "output_format": "jpeg"}, "background"),
        ({"background": "clear"}, "background"),
        ({"output_format": "gif"}, "output_format"),
        ({"moderation": "none"}, "moderation"),
        ({"input_fidelity": "high"}, "input_fidelity"),  # no image to be faithful to
        ({"user": 7}, "user"),
        ({"safety_identifier": "x" * 65}, "safety_identifier"),
    ],
)
def test_options_are_validated(api, customer, body, param):
    _, _, auth = customer
    request = {"model": "gpt-image-2", "prompt": "x", "quality": "low", **body}
    response = api.post("/api/v1/images/generations", data=request, format="json", **auth)
    assert (response.status_code, response.json()["error"]["param"]) == (400, param)


def test_options_in_a_form_are_read_from_strings(api, customer, unconsumed_queue):
    _, _, auth = customer
    form = {"model": "gpt-image-2", "prompt": "x", "quality": "low", "async": "true"}
    form |= {"output_format": "webp", "output_compression": "60", "background": "transparent", "moderation": "low"}
    response = api.post("/api/v1/images/generations", data=form, format="multipart", **auth)
    assert response.status_code == 202, response.content
    assert (response.json()["output_format"], response.json()["background"]) == ("webp", "transparent")
    generation = Generation.objects.get(pk=response.json()["id"])
    expected = {"output_format": "webp", "output_compression": 60, "background": "transparent", "moderation": "low"}
    assert generation.options == expected
    edit = {"model": "gpt-image-2", "prompt": "x", "image": named("i.png", image_bytes()), "moderation": "low"}
    refused = api.post("/api/v1/images/edits", data=edit, format="multipart", **auth)
    assert (refused.status_code, refused.json()["error"]["param"]) == (400, "moderation")  # OpenAI's edits take none


@pytest.mark.parametrize(
    "asked, plan",
    [
        ({"output_format": "webp"}, {}),  # a PNG came back
        ({"background": "transparent"}, {}),  # an opaque one
        ({}, {"size": "1536x1024"}),  # another size
    ],
)
def test_an_image_other_than_asked_is_the_providers_error_and_refunded(
    live_server, customer, offered, fake_openai, celery_worker, asked, plan
):
    user, raw, _ = customer
    fake_openai.plan("ignore_options", wrong=1, **plan)
    result = sdk(live_server, raw).images.generate(
        model="gpt-image-1", prompt="two", size="1024x1024", quality="medium", n=2, **asked
    )
    assert len(result.data) == 1  # the one as asked
    generation = Generation.objects.get(owner=user)
    assert (generation.credits_requested, generation.credits_refunded) == (6, 3)
    assert CreditAccount.objects.get(user=user).balance == 120 - 3

    fake_openai.plan("ignore_options", **plan)
    with pytest.raises(openai.InternalServerError) as failed:
        sdk(live_server, raw).images.generate(
            model="gpt-image-1", prompt="one", size="1024x1024", quality="low", **asked
        )
    assert "not the image asked" in failed.value.body["message"]
    assert CreditAccount.objects.get(user=user).balance == 120 - 3
    assert_reconciled()


def test_an_idempotency_key_tells_requests_apart_by_their_options(api, customer, unconsumed_queue):
    _, _, auth = customer
    body = {"model": "gpt-image-2", "prompt": "x", "quality": "low", "async": True, "output_format": "webp"}
    keyed = {**auth, "HTTP_IDEMPOTENCY_KEY": "opt-1"}
    first = api.post("/api/v1/images/generations", data=body, format="json", **keyed)
    again = api.post("/api/v1/images/generations", data=body, format="json", **keyed)
    assert first.status_code == again.status_code == 202 and first.json()["id"] == again.json()["id"]
    other = api.post("/api/v1/images/generations", data={**body, "output_format": "jpeg"}, format="json", **keyed)
    assert (other.status_code, other.json()["error"]["code"]) == (409, "idempotencyConflict")
