import json
import re
import time
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import CreditAccount, LedgerEntry
from generations.models import Generation, ReferenceImage
from hub.infra import storage
from hub.infra.timefmt import iso_z
from tests.factories import bearer, create_generation, make_generation, make_key, make_user
from tests.images import image_bytes, upload

pytestmark = pytest.mark.django_db
URL = "/api/v1/images/generations"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_async_answers_202_queued_and_charges_up_front(api, customer, django_capture_on_commit_callbacks):
    user, _, auth = customer
    body = {
        "model": "gpt-image-2",
        "prompt": "A cinematic product photo",
        "size": "1024x1024",
        "quality": "high",
        "n": 1,
        "async": True,
    }
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(URL, data=json.dumps(body), content_type="application/json", **auth)
    assert response.status_code == 202
    data = response.json()
    assert data["object"] == "image_generation"
    assert data["id"].startswith("gen_") and len(data["id"]) == 28
    assert data["status"] == "queued"
    assert data["model"] == "gpt-image-2"
    assert data["aspect_ratio"] == "1:1"
    assert data["quality"] == "1K"
    assert ISO.match(data["created_at"])
    assert data["images"] == [] and data["data"] == []
    assert data["usage"] == {"credits": 0, "credits_requested": 8}
    assert data["poll_url"] == f"http://testserver/api/v1/generations/{data['id']}"
    assert CreditAccount.objects.get(user=user).balance == 112
    charge = LedgerEntry.objects.get(kind="charge", generation_id=data["id"])
    assert charge.amount == -8
    assert len(callbacks) == 1  # the task is sent only after the charge commits


def test_multipart_form_fields_are_strings(api, customer):
    form = {"model": "gpt-image-2", "prompt": "p", "size": "1536x1024", "quality": "low", "n": "3", "async": "true"}
    response = api.post(URL, data=form, format="multipart", **customer[2])
    assert response.status_code == 202
    data = response.json()
    assert (data["aspect_ratio"], data["quality"], data["usage"]["credits_requested"]) == ("3:2", "1K", 6)


def test_defaults_size_and_quality_to_auto(api, customer):
    response = api.post(URL, data={"model": "gpt-image-2", "prompt": "p", "async": True}, format="json", **customer[2])
    assert response.status_code == 202
    assert response.json()["aspect_ratio"] == "auto"
    assert response.json()["usage"]["credits_requested"] == 8


def test_reference_images_are_stored_reencoded(api, customer):
    files = [
        upload("a.jpg", image_bytes("JPEG"), "image/jpeg"),
        upload("b.webp", image_bytes("WEBP"), "application/octet-stream"),
    ]
    form = {"model": "gpt-image-2", "prompt": "p", "async": "true", "reference_image": files}
    response = api.post(URL, data=form, format="multipart", **customer[2])
    assert response.status_code == 202, response.content
    refs = ReferenceImage.objects.filter(generation_id=response.json()["id"])
    assert refs.count() == 2
    assert all(storage.object_read(ref.storage_key).startswith(b"\x89PNG") for ref in refs)


def test_reading_another_users_generation_is_not_found(api, customer):
    _, _, auth = customer
    created = api.post(URL, data={"model": "gpt-image-2", "prompt": "p", "async": True}, format="json", **auth).json()
    assert api.get(f"/api/v1/generations/{created['id']}", **auth).status_code == 200
    stranger = bearer(make_key(make_user(credits=50)))
    response = api.get(f"/api/v1/generations/{created['id']}", **stranger)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "notFound"
    assert api.get("/api/v1/generations/gen_doesnotexist", **auth).json()["error"]["code"] == "notFound"


def test_a_poll_reads_the_row_and_a_succeeded_ones_images_in_one_query(api, customer):
    """GET /generations/{id} (a client polls every second): one read of the row, with its images on
    PostgreSQL (generations.selectors.with_images) — no join to the model, no prefetch; on the
    embedded SQLite the images of a succeeded one are a second query."""
    user, _, auth = customer
    queued, succeeded = create_generation(user), make_generation(user, n=2)

    def read(generation_id: str) -> tuple[int, dict]:
        with CaptureQueriesContext(connection) as queries:
            response = api.get(f"/api/v1/generations/{generation_id}", **auth)
        assert response.status_code == 200
        return sum("generations_" in q["sql"] for q in queries), response.json()

    reads, body = read(queued.id)
    assert (reads, body["status"], body["images"]) == (1, "queued", [])
    reads, body = read(succeeded.id)
    assert reads == (1 if connection.vendor == "postgresql" else 2)
    stored = list(succeeded.images.order_by("index"))
    assert [(image["id"], image["created_at"]) for image in body["images"]] == [
        (image.id, iso_z(image.created_at)) for image in stored
    ]
    assert [urlsplit(image["url"]).path.rsplit("/", 1)[-1] for image in body["images"]] == [
        image.storage_key.rsplit("/", 1)[-1] for image in stored
    ]
    assert (body["status"], body["model"]) == ("succeeded", "gpt-image-2")


def test_generation_lookup_requires_key(api):
    assert api.get("/api/v1/generations/gen_x").json()["error"]["code"] == "missingApiKey"
    assert Generation.objects.count() == 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite's locked read has no FOR UPDATE to tell it by")
def test_the_precheck_reads_the_account_with_the_api_key(api, customer):
    """One read brings the key, its owner and the owner's account; the charge then locks the
    account. No separate read of the account before the transaction (a round trip per request)."""
    _, _, auth = customer
    body = {"model": "gpt-image-2", "prompt": "p", "size": "1024x1024", "quality": "low", "n": 1, "async": True}
    with CaptureQueriesContext(connection) as queries:
        response = api.post(URL, data=json.dumps(body), content_type="application/json", **auth)
    assert response.status_code == 202
    sql = [query["sql"] for query in queries]
    assert [
        q for q in sql if q.startswith("SELECT") and 'FROM "billing_creditaccount"' in q and "FOR UPDATE" not in q
    ] == []
    assert [q for q in sql if 'FROM "apikeys_apikey"' in q and 'JOIN "billing_creditaccount"' in q]


def test_a_key_whose_owner_has_no_account_yet_is_refused_for_credits(api):
    """The key lookup's outer join finds no account: the precheck makes one (zero credits), 402."""
    user = make_user()
    CreditAccount.objects.filter(user=user).delete()
    auth = bearer(make_key(user))
    body = {"model": "gpt-image-2", "prompt": "p", "size": "1024x1024", "quality": "low", "n": 1, "async": True}
    response = api.post(URL, data=json.dumps(body), content_type="application/json", **auth)
    assert response.status_code == 402, response.content
    assert CreditAccount.objects.get(user=user).balance == 0


def test_a_prefer_wait_past_the_generation_timeout_applies_the_timeout(api, customer, settings):
    """Not `wait=inf` nor `wait=1e+30`: the wait the hub applies (no worker here: the generation
    stays queued, and the request answers 202 after the capped wait)."""
    settings.GENERATION_TIMEOUT_SECONDS = 1
    _, _, auth = customer
    body = {"model": "gpt-image-2", "prompt": "a fox", "size": "1024x1024", "quality": "low"}
    for huge in ("1" + "0" * 30, "9" * 400):  # 1e+30; past a float's range: inf
        started = time.monotonic()
        response = api.post(URL, body, format="json", HTTP_PREFER=f"wait={huge}", **auth)
        assert 1 <= time.monotonic() - started < 6  # not the huge wait
        assert (response.status_code, response["Preference-Applied"]) == (202, "wait=1")
