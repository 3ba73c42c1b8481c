"""`webhook_url` / `webhook_events` on a generation request: stored as written when usable, a
400 with `param` and a message that says why (nothing charged) when not — a URL the sender could
not use, or a literal address webhooks may not reach."""

import json

import pytest
from django.test import override_settings

from generations.models import Generation
from tests.images import image_bytes, upload
from tests.reconcile import assert_reconciled

pytestmark = pytest.mark.django_db
URL = "/api/v1/images/generations"
VALID = {"model": "gpt-image-2", "prompt": "a red fox", "size": "1024x1024", "quality": "low", "async": True}


def _post_json(api, auth, body):
    return api.post(URL, data=json.dumps(body), content_type="application/json", **auth)


def test_json_webhook_is_stored_with_completed_by_default(api, customer):
    response = _post_json(api, customer[2], {**VALID, "webhook_url": "https://example.com/hooks/hub?x=1"})
    assert response.status_code == 202, response.content
    generation = Generation.objects.get(pk=response.json()["id"])
    assert generation.webhook_url == "https://example.com/hooks/hub?x=1"
    assert generation.webhook_events == ["completed"]
    assert generation.webhook_base_url == "http://testserver"
    assert "webhook_url" not in response.json()  # the response shape is unchanged
    assert_reconciled()


def test_multipart_webhook_events_repeated_or_comma_separated(api, customer):
    for events in (["started", "completed"], ["started,completed"]):
        body = {**VALID, "async": "true", "webhook_url": "http://example.com/h", "webhook_events": events}
        response = api.post(URL, data=body, format="multipart", **customer[2])
        assert response.status_code == 202, response.content
        generation = Generation.objects.get(pk=response.json()["id"])
        assert generation.webhook_events == ["completed", "started"]
    assert_reconciled()


def test_the_edits_endpoint_takes_a_webhook_too(api, customer):
    body = {
        "model": "gpt-image-2",
        "prompt": "merge",
        "async": "true",
        "webhook_url": "https://example.com/h",
        "image": upload("ref.png", image_bytes(size=(16, 16))),
    }
    response = api.post("/api/v1/images/edits", data=body, format="multipart", **customer[2])
    assert response.status_code == 202, response.content
    assert Generation.objects.get(pk=response.json()["id"]).webhook_url == "https://example.com/h"
    assert_reconciled()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"webhook_url": "ftp://example.com/x"}, "webhook_url"),
        ({"webhook_url": "http://"}, "webhook_url"),
        ({"webhook_url": "https:///path"}, "webhook_url"),
        ({"webhook_url": "example.com/hook"}, "webhook_url"),
        ({"webhook_url": "javascript:alert(1)"}, "webhook_url"),
        ({"webhook_url": "http://user:pass@example.com/"}, "webhook_url"),
        ({"webhook_url": "http://example.com/\u0000"}, "webhook_url"),
        ({"webhook_url": "https://example.com/" + "a" * 2048}, "webhook_url"),
        ({"webhook_url": 42}, "webhook_url"),
        ({"webhook_url": "https://example.com/", "webhook_events": ["finished"]}, "webhook_events"),
        ({"webhook_url": "https://example.com/", "webhook_events": "completed"}, "webhook_events"),
        ({"webhook_url": "https://example.com/", "webhook_events": []}, "webhook_events"),
        ({"webhook_url": "https://example.com/", "webhook_events": [1]}, "webhook_events"),
        ({"webhook_events": ["completed"]}, "webhook_events"),
    ],
)
def test_an_unusable_webhook_is_a_400_naming_the_field(api, customer, fields, param):
    response = _post_json(api, customer[2], {**VALID, **fields})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert not Generation.objects.exists()
    assert_reconciled()


def _refused(api, auth, url: str) -> str:
    """The 400's message for `url`, after checking that nothing was made or charged."""
    before = api.get("/api/v1/credits", **auth).json()["credits"]
    response = _post_json(api, auth, {**VALID, "webhook_url": url})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["param"] == "webhook_url"
    assert api.get("/api/v1/credits", **auth).json()["credits"] == before
    assert not Generation.objects.exists()
    return error["message"]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://a..b/hook", "empty label"),
        (f"https://{'a' * 64}.example.com/", "longer than 63"),
        (f"https://{'a.' * 127}com/", "longer than 253"),
        ("https://☃.example/", "internationalised"),
        ("https://ex%41mple.com/", "letters, digits, hyphens and underscores"),
        ("http://example.com:0/", "port must be a number from 1 to 65535"),
        ("http://example.com:65536/", "port must be a number from 1 to 65535"),
        ("http://example.com:99999/", "port must be a number from 1 to 65535"),
        ("http://example.com:8o/", "port must be a number from 1 to 65535"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://0x7f.1/", "127.0.0.1"),
        ("http://2130706433/", "127.0.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://0x08.8.8.8/", "write it as 8.8.8.8"),  # a public address too: one way of writing it
        ("http://256.1.1.1/", "not an IPv4 address"),
        ("http://[fe80::1%25eth0]/", "zone id"),
        ("http://[v1.x]/", "not an IPv6 address"),
    ],
)
def test_a_host_or_port_the_sender_cannot_use_is_a_400_that_says_why(api, customer, url, says):
    assert says in _refused(api, customer[2], url)


@override_settings(WEBHOOK_ALLOW_LOOPBACK=False)  # production
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://10.0.0.5/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::127.0.0.1]/",
        "http://[::169.254.169.254]/",
        "http://[::ffff:0:7f00:1]/",
        "http://[::ffff:10.0.0.5]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://[64:ff9b::192.168.0.1]/",
        "http://[fd00:ec2::254]/",
    ],
)
def test_a_literal_address_webhooks_may_not_reach_is_a_400_in_production(api, customer, url):
    assert "address" in _refused(api, customer[2], url)


@override_settings(WEBHOOK_ALLOW_LOOPBACK=False)
@pytest.mark.parametrize(
    "url",
    [
        "https://8.8.8.8/hook",
        "https://[2606:4700:4700::1111]:8443/h",
        "https://bücher.example/h",
        "https://a_b.example./",
    ],
)
def test_a_public_address_or_any_name_is_taken_as_written(api, customer, url):
    response = _post_json(api, customer[2], {**VALID, "webhook_url": url})
    assert response.status_code == 202, response.content
    assert Generation.objects.get(pk=response.json()["id"]).webhook_url == url


def test_multipart_unknown_event_is_a_400(api, customer):
    body = {**VALID, "async": "true", "webhook_url": "http://example.com/h", "webhook_events": "completed,done"}
    response = api.post(URL, data=body, format="multipart", **customer[2])
    assert response.status_code == 400 and response.json()["error"]["param"] == "webhook_events"


def test_an_idempotent_retry_with_another_webhook_is_a_conflict(api, customer):
    headers = {**customer[2], "HTTP_IDEMPOTENCY_KEY": "order-1"}
    first = _post_json(api, headers, {**VALID, "webhook_url": "https://example.com/a"})
    again = _post_json(api, headers, {**VALID, "webhook_url": "https://example.com/a"})
    other = _post_json(api, headers, {**VALID, "webhook_url": "https://example.com/b"})
    assert first.json()["id"] == again.json()["id"]
    assert other.status_code == 409
    assert_reconciled()
