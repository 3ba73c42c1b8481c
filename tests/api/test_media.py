"""Stored images: opaque keys everywhere; on the embedded default (no S3) the hub serves generated
images only through signed, expiring URLs, and never serves the references users upload."""

import io
import time
import types

import pytest
from django.test import override_settings

import hub.http.media
from generations.models import Generation
from generations.services import StoredImage, generation_claim, generation_create, generation_finalize
from hub.infra import storage
from tests.images import image_bytes, upload
from workers.runner import generation_run

LOCAL = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
URL = "/api/v1/images/generations"


@pytest.fixture
def local_storage(tmp_path):
    with override_settings(STORAGES=LOCAL, USE_S3=False, MEDIA_ROOT=str(tmp_path)):
        yield tmp_path


def _deliver(generation_id: str, *, n: int = 1) -> None:
    """What a worker does: claim, store the images, finalize."""
    attempt = generation_claim(generation_id=generation_id).attempts
    images = []
    for index in range(n):
        data = image_bytes(size=(16, 16))
        key = storage.image_key(generation_id=generation_id, index=index)
        storage.object_save(key=key, data=data, content_type="image/png")
        images.append(StoredImage(index, key, "image/png", 16, 16, len(data)))
    generation_finalize(generation_id=generation_id, attempt=attempt, images=images)


def _generate_with_a_reference(api, auth, *, n: int = 1) -> dict:
    """`curl -F reference_image=@x.jpg …`, then the generation as its owner reads it."""
    form = {
        "model": "gpt-image-2",
        "prompt": "p",
        "quality": "low",
        "n": str(n),
        "async": "true",
        "reference_image": [upload("x.jpg", image_bytes("JPEG"), "image/jpeg")],
    }
    created = api.post(URL, data=form, format="multipart", **auth)
    assert created.status_code == 202, created.content
    _deliver(created.json()["id"], n=n)
    return api.get(f"/api/v1/generations/{created.json()['id']}", **auth).json()


def _error(response, status: int, code: str) -> None:
    assert response.status_code == status
    body = response.json()
    assert body["error"]["code"] == code
    assert set(body["error"]) == {"message", "code", "type", "param"}


@pytest.mark.django_db
def test_reference_uploads_are_never_served(api, customer, local_storage):
    generation = _generate_with_a_reference(api, customer[2])
    url = generation["data"][0]["url"].removeprefix("http://testserver")
    assert api.get(url).status_code == 200

    _error(api.get(url.replace("/media/generations/", "/media/references/")), 404, "notFound")
    _error(api.get(f"/media/references/{generation['id']}/0.png"), 404, "notFound")
    (reference,) = Generation.objects.get(pk=generation["id"]).references.all()
    assert (local_storage / reference.storage_key).is_file()  # stored, only never served


@pytest.mark.django_db
def test_local_image_urls_are_signed_and_cannot_be_derived(api, customer, local_storage):
    generation = _generate_with_a_reference(api, customer[2], n=2)
    first, second = (item["url"].removeprefix("http://testserver") for item in generation["data"])
    path, _, query = first.partition("?")
    assert path == f"/media/generations/{generation['id']}/0.png"
    assert api.get(first)["Cache-Control"].startswith("private, max-age=")

    _error(api.get(path), 403, "invalidSignature")  # the bare path
    _error(api.get(path.replace("/0.png", "/1.png") + "?" + query), 403, "invalidSignature")  # another image's
    _error(api.get(first[:-3] + ("xyz" if not first.endswith("xyz") else "abc")), 403, "invalidSignature")
    expires = int(query.split("expires=")[1].split("&")[0])
    _error(api.get(first.replace(f"expires={expires}", f"expires={expires + 3600}")), 403, "invalidSignature")
    assert api.get(second).status_code == 200


@pytest.mark.django_db
def test_local_image_urls_expire_after_the_presign_lifetime(api, customer, local_storage, monkeypatch, settings):
    generation = _generate_with_a_reference(api, customer[2])
    url = generation["data"][0]["url"].removeprefix("http://testserver")
    now = time.time()
    later = types.SimpleNamespace(time=lambda: now + settings.AWS_QUERYSTRING_EXPIRE + 1)
    monkeypatch.setattr(hub.http.media, "time", later)
    _error(api.get(url), 403, "expiredUrl")


@pytest.mark.django_db
def test_local_storage_serves_the_newest_bytes_and_answers_missing_files_in_the_envelope(api, local_storage):
    key = storage.image_key(generation_id="gen_x", index=0)
    storage.object_save(key=key, data=b"\x89PNG fake", content_type="image/png")
    storage.object_save(key=key, data=b"\x89PNG newer", content_type="image/png")
    url = storage.object_url(key, base_url="http://testserver")
    assert url.startswith("http://testserver/media/generations/gen_x/0.png?expires=")
    response = api.get(url.removeprefix("http://testserver"))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"\x89PNG newer"
    storage.object_delete(key)
    _error(api.get(url.removeprefix("http://testserver")), 404, "notFound")
    _error(api.get("/media/../hub/settings/base.py"), 404, "notFound")


@pytest.mark.django_db
def test_media_route_is_off_when_images_live_in_s3(api):
    with override_settings(USE_S3=True):
        _error(api.get("/media/generations/gen_x/0.png"), 404, "notFound")


@pytest.mark.django_db(transaction=True)
def test_stored_keys_carry_only_the_generation_id(customer, unconsumed_queue):
    """Keys written by the real services and runner (S3 on the suite's default) name no account."""
    generation = generation_create(
        owner=customer[0],
        api_key=None,
        model_id="gpt-image-2",
        prompt="p",
        size="1024x1024",
        quality="low",
        n=2,
        is_async=True,
        references=[io.BytesIO(image_bytes())],
    )
    generation_run(generation.id)
    generation.refresh_from_db()
    assert generation.status == "succeeded"
    assert [ref.storage_key for ref in generation.references.all()] == [f"references/{generation.id}/0.png"]
    assert sorted(image.storage_key for image in generation.images.all()) == [
        f"generations/{generation.id}/0.png",
        f"generations/{generation.id}/1.png",
    ]
