"""The whole path through a real Celery worker process on the configured broker."""

import io
import time

import pytest
from PIL import Image

from billing.models import CreditAccount, LedgerEntry
from billing.selectors import ledger_drift
from generations.models import GeneratedImage, Generation
from tests.conftest import fetch
from tests.images import image_bytes, upload

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
URL = "/api/v1/images/generations"
BODY = {
    "model": "gpt-image-2",
    "prompt": "A cinematic product photo with premium studio lighting",
    "size": "1024x1024",
    "quality": "high",
    "n": 1,
}


def _download(api, url: str) -> Image.Image:
    image = Image.open(io.BytesIO(fetch(api, url)))
    image.load()
    return image


def test_sync_generation_returns_images_usage_and_balance(api, customer, celery_worker):
    user, _, auth = customer
    response = api.post(URL, data=BODY, format="json", **auth)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "succeeded"
    assert (body["aspect_ratio"], body["quality"]) == ("1:1", "1K")
    assert body["usage"] == {"credits": 8, "credits_requested": 8}
    assert body["balance"] == {"credits": 112, "account_type": "PRO", "next_expiration": None}
    (image,) = body["images"]
    assert image["id"].startswith("img_") and image["object"] == "image"
    assert body["data"] == [{"url": image["url"]}]
    picture = _download(api, image["url"])
    assert picture.size == (1024, 1024)
    assert len(set(picture.resize((16, 16)).get_flattened_data())) > 4  # a real picture, not a blank square
    assert ledger_drift() == []


def test_async_generation_is_polled_to_success(api, customer, celery_worker):
    _, _, auth = customer
    response = api.post(URL, data={**BODY, "size": "1536x1024", "n": 2, "async": True}, format="json", **auth)
    assert response.status_code == 202
    poll = response.json()["poll_url"].removeprefix("http://testserver")
    for _ in range(150):
        body = api.get(poll, **auth).json()
        if body["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.1)
    assert body["status"] == "succeeded"
    assert body["usage"] == {"credits": 16, "credits_requested": 16}
    assert [_download(api, i["url"]).size for i in body["images"]] == [(1536, 1024), (1536, 1024)]


def test_provider_failure_answers_500_and_refunds(api, customer, celery_worker):
    user, _, auth = customer
    response = api.post(URL, data={**BODY, "prompt": "boom [fail]", "n": 2}, format="json", **auth)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "generationFailed"
    assert "provider" in error["message"].lower()
    generation = Generation.objects.get(pk=error["generation_id"])
    assert (generation.status, generation.credits_refunded) == ("failed", 16)
    assert CreditAccount.objects.get(user=user).balance == 120
    assert LedgerEntry.objects.filter(generation_id=generation.id, kind="refund").count() == 1
    assert ledger_drift() == []


def test_partial_result_refunds_missing_images(api, customer, celery_worker):
    user, _, auth = customer
    response = api.post(
        URL, data={**BODY, "prompt": "two only [partial:1]", "n": 3, "quality": "medium"}, format="json", **auth
    )
    assert response.status_code == 200
    body = response.json()
    assert len(body["images"]) == 1
    assert body["usage"] == {"credits": 4, "credits_requested": 12, "credits_refunded": 8}
    assert body["error"]["code"] == "partial_result"
    assert body["balance"]["credits"] == 116
    assert GeneratedImage.objects.filter(generation_id=body["id"]).count() == 1


def test_malformed_provider_output_fails_and_refunds(api, customer, celery_worker):
    user, _, auth = customer
    response = api.post(URL, data={**BODY, "prompt": "[malformed]"}, format="json", **auth)
    assert response.status_code == 500
    assert "not a valid image" in response.json()["error"]["message"]
    assert CreditAccount.objects.get(user=user).balance == 120


def test_reference_image_reaches_the_provider(api, customer, celery_worker):
    _, _, auth = customer
    ref = upload("reference.png", image_bytes("PNG", size=(300, 300), color=(0, 255, 0)))
    form = {**{k: str(v) for k, v in BODY.items()}, "reference_image": ref}
    response = api.post(URL, data=form, format="multipart", **auth)
    assert response.status_code == 200, response.content
    picture = _download(api, response.json()["images"][0]["url"]).convert("RGB")
    # the local provider pastes the first reference in the bottom-right corner
    assert picture.getpixel((1024 - 60, 1024 - 60)) == (0, 255, 0)
