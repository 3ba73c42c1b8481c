"""Every way a generation request can be wrong answers 400 invalid_request, charging nothing."""

import json

import pytest

from billing.models import CreditAccount, LedgerEntry
from generations.models import Generation
from tests.images import image_bytes, upload

pytestmark = pytest.mark.django_db
URL = "/api/v1/images/generations"
VALID = {"model": "gpt-image-2", "prompt": "a red fox", "size": "1024x1024", "quality": "high", "n": 1, "async": True}


def _assert_rejected(response, message_part: str = ""):
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"]["code"] == "invalid_request"
    assert message_part.lower() in body["error"]["message"].lower()
    assert Generation.objects.count() == 0
    assert not LedgerEntry.objects.filter(kind="charge").exists()


def _post_json(api, auth, body):
    return api.post(URL, data=json.dumps(body), content_type="application/json", **auth)


def test_malformed_json(api, customer):
    response = api.post(URL, data='{"model": "gpt-image-2", ', content_type="application/json", **customer[2])
    _assert_rejected(response, "malformed")


def test_json_that_is_not_an_object(api, customer):
    _assert_rejected(api.post(URL, data="[1, 2]", content_type="application/json", **customer[2]), "object")


def test_unsupported_content_type(api, customer):
    response = api.post(URL, data="model=gpt-image-2", content_type="text/plain", **customer[2])
    _assert_rejected(response, "content-type")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": "dall-e-9"}, "unknown model"),
        ({"model": None}, "model"),
        ({"model": 5}, "model"),
        ({"prompt": None}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": ["a"]}, "prompt"),
        ({"n": 0}, "'n'"),
        ({"n": 5}, "'n'"),
        ({"n": -1}, "'n'"),
        ({"n": 1.5}, "'n'"),
        ({"n": "2"}, "'n'"),
        ({"n": True}, "'n'"),
        ({"size": "999x999"}, "size"),
        ({"size": 1024}, "size"),
        ({"quality": "ultra"}, "quality"),
        ({"async": "yes please"}, "async"),
        ({"reference_image": "aGVsbG8="}, "multipart"),
    ],
)
def test_invalid_json_fields(api, customer, change, message):
    body = {**VALID, **change}
    body = {k: v for k, v in body.items() if v is not None}
    _assert_rejected(_post_json(api, customer[2], body), message)


def test_multipart_invalid_n(api, customer):
    response = api.post(URL, data={**VALID, "n": "seven", "async": "true"}, format="multipart", **customer[2])
    _assert_rejected(response, "'n'")


def test_too_many_reference_images(api, customer):
    from generations.models import ImageModel

    ImageModel.objects.filter(pk="gpt-image-2").update(reference_image_limit=2)
    files = [upload(f"r{i}.png", image_bytes()) for i in range(3)]
    response = api.post(
        URL, data={**VALID, "async": "true", "reference_image": files}, format="multipart", **customer[2]
    )
    _assert_rejected(response, "at most 2")


def test_reference_that_is_text_renamed_png(api, customer):
    bad = upload("reference.png", b"definitely not an image\n" * 10, "image/png")
    response = api.post(URL, data={**VALID, "async": "true", "reference_image": bad}, format="multipart", **customer[2])
    _assert_rejected(response, "reference_image")


def test_truncated_reference(api, customer):
    data = image_bytes("PNG", size=(300, 300))
    bad = upload("reference.png", data[: len(data) // 2])
    response = api.post(URL, data={**VALID, "async": "true", "reference_image": bad}, format="multipart", **customer[2])
    _assert_rejected(response, "reference_image")


def test_unexpected_file_field(api, customer):
    extra = upload("x.png", image_bytes())
    response = api.post(URL, data={**VALID, "async": "true", "mask": extra}, format="multipart", **customer[2])
    _assert_rejected(response, "mask")


def test_insufficient_credits_charges_nothing(api, customer):
    user, _, auth = customer
    response = _post_json(api, auth, {**VALID, "n": 4, "quality": "high"} | {"n": 4})
    assert response.status_code == 202  # 32 of 120
    CreditAccount.objects.filter(user=user).update()
    for _ in range(2):
        _post_json(api, auth, {**VALID, "n": 4})
    response = _post_json(api, auth, {**VALID, "n": 4})  # 120 - 96 = 24 < 32
    assert response.status_code == 402
    assert response.json() == {
        "error": {
            "message": "Not enough credits: 32 needed, 24 available",
            "code": "insufficientCredits",
            "type": "insufficient_credits",
            "param": None,
        }
    }
    assert Generation.objects.count() == 3
    assert CreditAccount.objects.get(user=user).balance == 24


def test_reference_image_sent_as_text_field(api, customer):
    response = api.post(
        URL, data={**VALID, "async": "true", "reference_image": "./reference.png"}, format="multipart", **customer[2]
    )
    _assert_rejected(response, "file upload")


def test_reference_over_the_size_cap_stops_the_upload_and_charges_nothing(api, customer, settings):
    settings.REFERENCE_IMAGE_MAX_BYTES = 64 * 1024
    big = upload("big.png", image_bytes("PNG", size=(64, 48)) + b"\0" * (200 * 1024))
    response = api.post(URL, data={**VALID, "async": "true", "reference_image": big}, format="multipart", **customer[2])
    _assert_rejected(response, "exceeds")


def test_decompression_bomb_reference_is_refused(api, customer, settings):
    settings.REFERENCE_IMAGE_MAX_PIXELS = 1_000_000
    bomb = upload("bomb.png", image_bytes("PNG", size=(2000, 2000)))
    response = api.post(
        URL, data={**VALID, "async": "true", "reference_image": bomb}, format="multipart", **customer[2]
    )
    _assert_rejected(response, "too large")


def test_reference_count_is_checked_before_any_file_is_decoded(api, customer):
    from generations.models import ImageModel

    ImageModel.objects.filter(pk="gpt-image-2").update(reference_image_limit=1)
    files = [upload("a.png", image_bytes()), upload("b.png", b"not an image")]
    response = api.post(
        URL, data={**VALID, "async": "true", "reference_image": files}, format="multipart", **customer[2]
    )
    _assert_rejected(response, "at most 1")
