"""No input reaches a 500: each of these answered 500 `internal_error` once. And expensive work
(decoding uploads) comes after the cheap refusals."""

import io
import json

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from billing.models import LedgerEntry
from generations import references
from tests.factories import bearer, make_key, make_user
from tests.images import image_bytes, upload

pytestmark = pytest.mark.django_db
URL = "/api/v1/images/generations"
VALID = {"model": "gpt-image-2", "prompt": "a fox", "size": "1024x1024", "quality": "low"}


def _refused(response, status=400, param=None):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] and error["message"] and error["type"]
    if param is not None:
        assert error["param"] == param
    assert LedgerEntry.objects.filter(kind="charge").count() == 0
    return error


def test_deeply_nested_json_is_a_400(api, customer):
    _, _, auth = customer
    _refused(api.post(URL, data="[" * 100_000, content_type="application/json", **auth))


def test_a_lone_surrogate_is_a_400(api, customer):
    _, _, auth = customer
    body = '{"model": "gpt-image-2", "prompt": "a\\ud800b", "size": "1024x1024", "quality": "low"}'
    _refused(api.post(URL, data=body, content_type="application/json", **auth), param="prompt")


@pytest.mark.parametrize("field", ["prompt", "model"])
def test_a_nul_character_is_a_400_on_every_database(api, customer, field):
    _, _, auth = customer
    _refused(api.post(URL, {**VALID, field: "a\x00b"}, format="json", **auth), param=field)


def test_a_superscript_digit_for_n_in_multipart_is_a_400(api, customer):
    _, _, auth = customer
    _refused(api.post(URL, {**VALID, "n": "²"}, format="multipart", **auth), param="n")


def test_a_nul_in_an_id_path_is_a_json_404(api, customer):
    _, _, auth = customer
    for path in ("/api/v1/generations/gen_%00abc", "/api/v1/models/a%00b", "/api/v1/generations/gen_%00/cancel"):
        response = api.get(path, **auth) if "cancel" not in path else api.post(path, **auth)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "notFound"


def test_a_form_urlencoded_body_is_refused(api, customer):
    _, _, auth = customer
    body = "model=gpt-image-2&prompt=a+fox&size=1024x1024&quality=low"
    _refused(api.post(URL, data=body, content_type="application/x-www-form-urlencoded", **auth))


# Django's DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000) and hub/settings/generations.py's DATA_UPLOAD_* limits.
TOO_MANY_PARAMS = "&".join(f"p{i}=1" for i in range(1001))
TOO_MANY_FIELDS = {**VALID, **{f"f{i}": "x" for i in range(1001)}}


def _unreadable(response, message):
    """A request Django refuses to read: once a 500 `internal_error` the SDKs retried."""
    error = _refused(response)
    assert error["code"] == "invalid_request" and error["message"] == message
    assert response["x-should-retry"] == "false"


@pytest.mark.parametrize("path", ["/api/v1/models", "/api/v1/openapi.json", "/api/v1/credits"])
def test_too_many_query_parameters_is_a_400_with_or_without_a_key(api, customer, path):
    _, _, auth = customer
    _unreadable(api.get(f"{path}?{TOO_MANY_PARAMS}"), "Too many query parameters or form fields")
    _unreadable(api.get(f"{path}?{TOO_MANY_PARAMS}", **auth), "Too many query parameters or form fields")


def test_too_many_multipart_fields_is_a_400(api, customer):
    _, _, auth = customer
    response = api.post(URL, TOO_MANY_FIELDS, format="multipart", **auth)
    _unreadable(response, "Too many query parameters or form fields")


def test_too_many_files_is_a_400(api, customer, decodes):
    _, _, auth = customer
    files = [upload(f"r{i}.png", image_bytes(size=(8, 8))) for i in range(33)]
    response = api.post(URL, {**VALID, "reference_image": files}, format="multipart", **auth)
    _unreadable(response, "Too many files")
    assert decodes == []


def test_a_json_body_over_the_upload_limit_is_a_400(api, customer):
    _, _, auth = customer
    body = json.dumps({**VALID, "prompt": "a" * (1024 * 1024)})
    _unreadable(api.post(URL, data=body, content_type="application/json", **auth), "Request body too large")


def test_too_many_query_parameters_outside_the_api_is_a_400_envelope(api):
    with override_settings(USE_S3=False):  # the hub serves its images: /media/ reads the query string
        response = api.get(f"/media/generations/gen_x/0.png?{TOO_MANY_PARAMS}")
    _unreadable(response, "Too many query parameters or form fields")


@pytest.fixture(scope="module")
def huge_blank_png():
    """6300×6300 pixels in a few KB: cheap to send, ~160 MB to decode."""
    out = io.BytesIO()
    Image.new("L", (6300, 6300)).save(out, format="PNG", optimize=True)
    return out.getvalue()


@pytest.fixture
def decodes(monkeypatch):
    calls = []
    original = references._png_from_upload
    monkeypatch.setattr(references, "_png_from_upload", lambda *a: calls.append(a) or original(*a))
    return calls


def test_a_key_without_credits_is_refused_before_any_upload_is_decoded(api, huge_blank_png, decodes):
    auth = bearer(make_key(make_user(credits=0)))
    files = [upload(f"big{i}.png", huge_blank_png) for i in range(16)]
    _refused(api.post(URL, {**VALID, "reference_image": files}, format="multipart", **auth), status=402)
    assert decodes == []


def test_pixels_are_limited_in_sum_before_any_upload_is_decoded(api, customer, huge_blank_png, decodes):
    _, _, auth = customer
    files = [upload(f"big{i}.png", huge_blank_png) for i in range(3)]  # 3 × 39.7 MP > 100 MP
    error = _refused(api.post(URL, {**VALID, "reference_image": files}, format="multipart", **auth))
    assert "too large together" in error["message"]
    assert decodes == []


def test_one_upload_decodes_within_the_limits(api, customer, decodes):
    _, _, auth = customer
    files = [upload("a.png", image_bytes()), upload("b.png", image_bytes("JPEG"))]
    response = api.post(URL, {**VALID, "async": "true", "reference_image": files}, format="multipart", **auth)
    assert response.status_code == 202
    assert len(decodes) == 2


# --- Property-based: whatever the body, never a 5xx, always the envelope, no charge on a 4xx.

_FIELDS = ["model", "prompt", "size", "quality", "n", "async", "response_format", "stream", "reference_image", "mask"]
_FIELDS += ["background", "output_format", "output_compression", "moderation", "user", "input_fidelity"]
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
_near_valid = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["gpt-image-2", "", "gpt-image-2\x00", "nope"]) | st.text(max_size=20),
        "prompt": st.text(max_size=60),
        "size": st.sampled_from(["auto", "1024x1024", "1x1", "99999x99999", "x"]) | st.text(max_size=12),
        "quality": st.sampled_from(["auto", "low", "high", "ultra"]) | st.text(max_size=8),
        "n": st.integers(-3, 9) | st.text(max_size=4) | st.booleans() | st.none(),
        "async": st.booleans() | st.text(max_size=5) | st.integers(),
        "response_format": st.sampled_from(["url", "b64_json", "png"]) | st.none(),
        "stream": st.booleans() | st.none(),
        "background": st.sampled_from(["auto", "opaque", "transparent", "clear"]) | st.none() | st.integers(),
        "output_format": st.sampled_from(["png", "jpeg", "webp", "gif"]) | st.none(),
        "output_compression": st.integers(-5, 105) | st.text(max_size=4) | st.floats(allow_nan=False) | st.none(),
        "moderation": st.sampled_from(["auto", "low", "off"]) | st.none(),
        "user": st.text(max_size=300) | st.integers() | st.none(),
        "input_fidelity": st.sampled_from(["high", "low", "max"]),
    },
)
_form_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)


def _assert_answer(response, charges_before):
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) >= {"message", "code", "type", "param"}
        assert LedgerEntry.objects.filter(kind="charge").count() == charges_before


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_near_valid | st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=8), _json_values) | _json_values)
def test_fuzzed_json_bodies_never_fail_the_server(api, customer, body):
    _, _, auth = customer
    before = LedgerEntry.objects.filter(kind="charge").count()
    raw = json.dumps(body)
    response = api.post(URL, data=raw, content_type="application/json", HTTP_PREFER="wait=0", **auth)
    _assert_answer(response, before)


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fields=st.dictionaries(st.sampled_from(_FIELDS) | _form_text, _form_text, max_size=8),
    file=st.none() | st.binary(max_size=200).map(lambda data: upload("f.png", data)),
    file_field=st.sampled_from(["reference_image", "image", "mask", "other"]),
)
def test_fuzzed_multipart_fields_never_fail_the_server(api, customer, fields, file, file_field):
    _, _, auth = customer
    before = LedgerEntry.objects.filter(kind="charge").count()
    data = {**fields, **({file_field: file} if file is not None else {})}
    response = api.post(URL, data, format="multipart", HTTP_PREFER="wait=0", **auth)
    _assert_answer(response, before)


@pytest.mark.parametrize(
    "header", ["Bearer gih_live_\x00" + "a" * 31, "Bearer gih_live_" + "a" * 31 + "\r", "Bearer \x00"]
)
def test_control_characters_in_the_authorization_header_are_a_401_envelope(api, header):
    response = api.get("/api/v1/credits", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalidApiKey"


def test_errors_outside_the_api_answer_in_the_envelope(api):
    for path in ("/media/generations/nope.png", "/media/references/x/0.png"):
        response = api.get(path)
        assert response.status_code in (403, 404)
        assert set(response.json()["error"]) >= {"message", "code", "type"}
    assert api.get("/healthz").json() == {"status": "ok"}
