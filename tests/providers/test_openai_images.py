"""OpenAIImagesProvider against the local fake OpenAI server, over real HTTP."""

import base64
import datetime
import io
import ipaddress
import json
import logging
import socket
import ssl
import time

import httpx
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image

from tests.fakes.openai_server import FakeOpenAIServer
from upstreams.costs import Usage
from workers.providers.base import ProviderError, ProviderRequest
from workers.providers.openai_images import OpenAIImagesProvider

API_KEY = "sk-test-SECRET-0123456789abcdef"


@pytest.fixture
def server():
    with FakeOpenAIServer(api_key=API_KEY) as srv:
        yield srv


def make_provider(server, **kwargs):
    kwargs.setdefault("max_retries", 4)
    return OpenAIImagesProvider(api_key=API_KEY, base_url=server.base_url, backoff_base=0.01, **kwargs)


def make_request(
    *, n=1, size="64x48", quality="low", prompt="a red fox", timeout=10.0, references=(), options=None, mask=None
):
    return ProviderRequest(
        model="gpt-image-1",
        prompt=prompt,
        size=size,
        quality=quality,
        n=n,
        deadline=time.monotonic() + timeout,
        references=list(references),
        options=options or {},
        mask=mask,
    )


def png(width, height, color=(10, 200, 30)):
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(params=["plain", "sdk"])
def path(request):
    """Which of the adapter's two paths a test's request takes (workers/providers/openai_images.py):
    a generation without references is POSTed on the adapter's own pool, one with references
    goes through the SDK's images.edit. Both must retry, time out and classify failures alike."""
    return request.param


def request_for(path, **kwargs):
    return make_request(references=[png(8, 8)] if path == "sdk" else (), **kwargs)


def test_generate_maps_fields(server):
    images = make_provider(server).generate(make_request(n=2, size="96x64", quality="high", prompt="two owls")).images

    assert len(images) == 2
    [rec] = server.requests
    assert rec.path == "/v1/images/generations"
    assert rec.body["model"] == "gpt-image-1"
    assert rec.body["prompt"] == "two owls"
    assert rec.body["size"] == "96x64"
    assert rec.body["quality"] == "high"
    assert rec.body["n"] == 2
    assert "response_format" not in rec.body
    assert rec.headers["authorization"] == f"Bearer {API_KEY}"


def test_a_plain_generation_sends_what_the_sdk_sends(server, monkeypatch):
    """A generation without references is POSTed on the adapter's own pool, not through the SDK
    (the SDK's machinery cost ~2 ms of CPU a call at a thousand in flight): the same method, path,
    body and headers — the SDK's authorization, organization, project and telemetry included."""
    monkeypatch.setenv("OPENAI_ORG_ID", "org-test")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-test")
    provider = make_provider(server)
    request = make_request(n=2, size="96x64", quality="high", prompt="two owls")

    provider.generate(request)
    next(provider._clients).images.generate(
        model="gpt-image-1", prompt="two owls", size="96x64", quality="high", n=2, timeout=10
    )

    plain, sdk = server.requests
    assert (plain.method, plain.path, plain.body) == (sdk.method, sdk.path, sdk.body)
    assert plain.headers["openai-organization"] == "org-test" and plain.headers["openai-project"] == "proj-test"
    timeout = "x-stainless-read-timeout"  # the time left, so it differs by a few microseconds
    assert sorted(line for line in plain.header_lines if line[0] != timeout) == sorted(
        line for line in sdk.header_lines if line[0] != timeout
    )
    assert 9 < float(plain.headers[timeout]) <= 10


def test_options_are_sent_alike_on_both_paths(server):
    """The image options reach the provider as fields of the body: the plain POST's JSON as the
    SDK's, and an edit's form with its mask part."""
    options = {"background": "transparent", "output_format": "webp", "output_compression": 40}
    options |= {"moderation": "low", "user": "end-user", "safety_identifier": "sid"}
    provider = make_provider(server)
    (image,) = provider.generate(make_request(size="96x64", options=options)).images
    next(provider._clients).images.generate(
        model="gpt-image-1", prompt="a red fox", size="96x64", quality="low", n=1, timeout=10, **options
    )
    plain, sdk = server.requests[:2]
    assert (
        plain.body
        == sdk.body
        == {"model": "gpt-image-1", "prompt": "a red fox", "size": "96x64"}
        | {
            "quality": "low",
            "n": 1,
            **options,
        }
    )
    assert Image.open(io.BytesIO(image)).format == "WEBP"

    mask = png(32, 32)
    edit = {"input_fidelity": "high", "output_format": "jpeg", "user": "end-user"}
    provider.generate(make_request(references=[png(32, 32)], options=edit, mask=mask))
    assert server.requests[2].mask_part == mask
    assert {name: server.requests[2].body[name] for name in edit} == edit


@pytest.fixture
def sdk_calls(monkeypatch):
    """The SDK's images.generate and images.edit, replaced by stand-ins that record their calls
    (and return nothing, which the adapter takes for a malformed response)."""
    calls = []
    for name in ("generate", "edit"):
        monkeypatch.setattr(openai.resources.images.Images, name, lambda *a, _name=name, **k: calls.append(_name))
    return calls


def test_a_plain_generation_does_not_call_the_sdk_and_an_edit_does(server, sdk_calls):
    provider = make_provider(server)

    assert len(provider.generate(make_request()).images) == 1
    assert sdk_calls == []
    with pytest.raises(ProviderError, match="malformed"):  # what the stand-in returned is no response
        provider.generate(make_request(references=[png(8, 8)]))
    assert sdk_calls == ["edit"]


def test_both_paths_speak_tls_and_verify_the_providers_certificate(tmp_path, monkeypatch):
    """The real provider is HTTPS: the plain POST verifies the certificate with the SDK's own TLS
    context (CA bundle, SSL_CERT_FILE, hostname), and refuses a provider it does not trust."""
    ca_file, server_context = tls_pair(tmp_path)
    sdk_calls = []
    monkeypatch.setattr(openai.resources.images.Images, "generate", lambda *a, **k: sdk_calls.append("generate"))
    with FakeOpenAIServer(api_key=API_KEY, tls=server_context) as server:
        assert server.base_url.startswith("https://127.0.0.1:")
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        trusting = make_provider(server)
        assert len(trusting.generate(make_request()).images) == 1
        assert len(trusting.generate(make_request(references=[png(8, 8)])).images) == 1
        assert sdk_calls == []  # the generation went on the plain pool, the edit through the SDK

        monkeypatch.delenv("SSL_CERT_FILE")
        untrusting = make_provider(server, max_retries=0)
        for request in (make_request(), make_request(references=[png(8, 8)])):
            with pytest.raises(ProviderError) as info:
                untrusting.generate(request)
            assert info.value.user_message == "Image provider is temporarily unavailable"

        assert [r.path for r in server.requests] == ["/v1/images/generations", "/v1/images/edits"]


def tls_pair(directory):
    """A throwaway CA's certificate (written to a file, for SSL_CERT_FILE) and a server context
    with a certificate it signed for 127.0.0.1."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub test CA")])
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), now).add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True
    )
    leaf = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name, key.public_key(), now
    ).add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    ca, leaf = ca.sign(ca_key, hashes.SHA256()), leaf.sign(ca_key, hashes.SHA256())
    ca_file, chain_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_file, key_file)
    return ca_file, context


def _certificate(subject, issuer, public_key, now):
    return x509.CertificateBuilder(
        subject_name=subject,
        issuer_name=issuer,
        public_key=public_key,
        serial_number=x509.random_serial_number(),
        not_valid_before=now - datetime.timedelta(minutes=5),
        not_valid_after=now + datetime.timedelta(days=1),
    )


def test_the_answer_comes_with_the_usage_the_provider_reported(server, path):
    """What the call is billed by: text and image input tokens (a reference image is billed as
    input), output tokens (medium 1536x1024: 1,584 a gpt-image-1 image), on both paths."""
    request = request_for(path, n=2, size="1536x1024", quality="medium", prompt="a fox in the snow")

    generated = make_provider(server).generate(request)

    references = 323 if path == "sdk" else 0
    assert generated.usage == Usage(input_text=4, input_image=references, output_image=2 * 1584, output_text=0)
    assert len(generated.images) == 2


def test_an_answer_without_usage_has_none(server):
    """An OpenAI-compatible server that reports no usage: unknown, not zero."""
    body = {"created": 1, "data": [{"b64_json": base64.b64encode(png(4, 4)).decode()}]}
    server.plan("malformed", body=json.dumps(body))

    generated = make_provider(server).generate(make_request())

    assert generated.usage is None and len(generated.images) == 1


def test_a_compressed_answer_is_decoded(server, path):
    server.plan("gzip")

    images = make_provider(server).generate(request_for(path, n=2)).images

    assert images == server.requests[0].response_images and len(images) == 2
    assert "gzip" in server.requests[0].headers["accept-encoding"]


def test_a_base_url_with_a_query_is_left_to_the_sdk(server, sdk_calls):
    """The SDK merges a base URL's query into each request's; the plain POST does not."""
    provider = OpenAIImagesProvider(api_key=API_KEY, base_url=server.base_url + "?api-version=1", max_retries=0)

    with pytest.raises(ProviderError, match="malformed"):  # what the stand-in returned is no response
        provider.generate(make_request())
    assert sdk_calls == ["generate"] and server.requests == []


def test_redirect_followed_with_the_same_request(server, path):
    server.plan("redirect")

    images = make_provider(server).generate(request_for(path)).images

    assert len(images) == 1
    first, second = server.requests
    assert [first.status, second.status] == [307, 200]
    assert (second.method, second.path, second.body) == (first.method, first.path, first.body)


def test_a_proxied_provider_is_called_through_the_sdk(server, monkeypatch):
    """The SDK honours HTTP(S)_PROXY and NO_PROXY; the adapter's own pool does not, so a proxied
    base URL is left to the SDK."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens: the SDK's call fails there
    monkeypatch.delenv("NO_PROXY", raising=False)

    with pytest.raises(ProviderError, match="unavailable"):
        make_provider(server, max_retries=0).generate(make_request())
    assert server.requests == []

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert len(make_provider(server).generate(make_request()).images) == 1


def test_b64_results_decoded_to_exact_bytes(server):
    images = make_provider(server).generate(make_request(n=2, size="80x40")).images

    assert images == server.requests[0].response_images
    assert images[0] != images[1]
    assert Image.open(io.BytesIO(images[0])).size == (80, 40)


def test_edit_sends_references_as_image_parts(server):
    refs = [png(32, 32, (255, 0, 0)), png(16, 24, (0, 0, 255))]

    images = make_provider(server).generate(make_request(n=1, size="auto", quality="medium", references=refs)).images

    [rec] = server.requests
    assert rec.path == "/v1/images/edits"
    assert rec.headers["content-type"].startswith("multipart/form-data")
    assert rec.image_count == 2
    assert rec.image_parts == refs
    assert rec.file_fields == ["image[]", "image[]"]
    assert rec.body == {"model": "gpt-image-1", "prompt": "a red fox", "size": "auto", "quality": "medium", "n": "1"}
    assert images == rec.response_images


def test_url_results_downloaded(server, path):
    server.plan("url")

    images = make_provider(server).generate(request_for(path, n=2)).images

    assert images == server.requests[0].response_images
    assert len(images) == 2


def test_429_retry_after_honoured_then_success(server, path):
    server.plan("429", retry_after=1)

    start = time.monotonic()
    images = make_provider(server).generate(request_for(path)).images
    elapsed = time.monotonic() - start

    assert len(images) == 1
    assert [r.status for r in server.requests] == [429, 200]
    assert 0.95 <= elapsed < 3  # after the 1 s it asked for; the bound only keeps a stall out


def test_retry_after_beyond_deadline_fails_fast(server, path):
    server.plan("429", retry_after=30)

    start = time.monotonic()
    with pytest.raises(ProviderError) as info:
        make_provider(server).generate(request_for(path, timeout=5))

    assert time.monotonic() - start < 3  # not the 5 s deadline, nor the 30 s asked
    assert info.value.permanent is False
    assert len(server.requests) == 1


def test_500_twice_then_success(server, path):
    server.plan("500", times=2)

    images = make_provider(server).generate(request_for(path)).images

    assert len(images) == 1
    assert [r.status for r in server.requests] == [500, 500, 200]


def test_500_forever_gives_up_after_max_retries(server, path):
    server.plan("500", times=None)

    with pytest.raises(ProviderError) as info:
        make_provider(server, max_retries=3).generate(request_for(path))

    assert info.value.permanent is False
    assert "unavailable" in info.value.user_message
    assert len(server.requests) == 4


def test_dropped_connection_retried(server, path):
    server.plan("disconnect")

    images = make_provider(server).generate(request_for(path)).images

    assert len(images) == 1
    assert len(server.requests) == 2


def test_connection_refused_gives_up(path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    provider = OpenAIImagesProvider(
        api_key=API_KEY, base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, backoff_base=0.01
    )

    with pytest.raises(ProviderError) as info:
        provider.generate(request_for(path))

    assert info.value.permanent is False
    assert "gave up after 3 attempts" in info.value.detail


@pytest.mark.parametrize("status", ["400", "422"])
def test_bad_request_is_permanent_with_provider_message(server, path, status):
    server.plan(status, message="Your request was rejected by the safety system.", code="moderation_blocked")

    with pytest.raises(ProviderError) as info:
        make_provider(server).generate(request_for(path))

    assert info.value.permanent is True
    assert info.value.user_message == "Provider rejected the request: Your request was rejected by the safety system."
    assert "moderation_blocked" in info.value.detail
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", ["401", "403"])
def test_auth_failure_is_generic_and_not_retried(server, path, status):
    server.plan(status)

    with pytest.raises(ProviderError) as info:
        make_provider(server).generate(request_for(path))

    assert info.value.permanent is False
    assert info.value.user_message == "Image provider authentication failed"
    assert len(server.requests) == 1


def test_other_4xx_not_retried(server, path):
    server.plan("404")

    with pytest.raises(ProviderError) as info:
        make_provider(server).generate(request_for(path))

    assert info.value.permanent is False
    assert len(server.requests) == 1


@pytest.mark.parametrize("behaviour", ["malformed", "missing_data", "bad_base64"])
def test_malformed_body_is_provider_error(server, path, behaviour):
    server.plan(behaviour)

    with pytest.raises(ProviderError) as info:
        make_provider(server).generate(request_for(path))

    assert info.value.user_message == "Provider returned a malformed response"
    assert info.value.permanent is False
    assert len(server.requests) == 1


def test_non_json_content_type_is_malformed(server, path):
    server.plan("malformed", body="<html>Bad gateway</html>", content_type="text/html")

    with pytest.raises(ProviderError, match="malformed"):
        make_provider(server).generate(request_for(path))


def test_slow_answer_times_out_within_deadline(server, path):
    server.plan("slow", seconds=5, times=None)

    start = time.monotonic()
    with pytest.raises(ProviderError) as info:
        make_provider(server).generate(request_for(path, timeout=1.0))

    assert "timed out" in info.value.user_message
    assert info.value.permanent is False
    assert time.monotonic() - start < 4  # the 1 s deadline, not the 5 s answer


def test_deadline_already_passed_sends_nothing(server):
    with pytest.raises(ProviderError, match="timed out"):
        make_provider(server).generate(make_request(timeout=-1))

    assert server.requests == []


def test_fewer_images_returned_as_is(server, path):
    server.plan("fewer", count=1)

    images = make_provider(server).generate(request_for(path, n=3)).images

    assert images == server.requests[0].response_images
    assert len(images) == 1


def test_image_content_not_validated(server):
    server.plan("not_image")

    assert make_provider(server).generate(make_request()).images == [b"this is not an image"]


def test_configuration_from_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)

    assert len(OpenAIImagesProvider(backoff_base=0.01).generate(make_request()).images) == 1


def test_missing_api_key_is_provider_error(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(ProviderError) as info:
        OpenAIImagesProvider()

    assert info.value.permanent is False
    assert info.value.user_message == "Image provider is not configured"


def test_api_key_never_in_errors_or_logs(server, path, caplog):
    caplog.set_level(logging.DEBUG, logger="workers.providers")
    provider = make_provider(server, max_retries=1)
    wrong_key = OpenAIImagesProvider(api_key=API_KEY[::-1], base_url=server.base_url, max_retries=0)
    scenarios = [
        (provider, "401", {}),  # the fake echoes the presented key in its message
        (wrong_key, "ok", {}),  # the fake's own key check: 401 quoting the wrong key
        (provider, "400", {"message": f"bad key {API_KEY}"}),
        (provider, "500", {"message": f"oops {API_KEY}", "times": None}),
        (provider, "malformed", {}),
        (provider, "slow", {"seconds": 2}),
    ]
    for prov, behaviour, params in scenarios:
        server.reset()
        server.plan(behaviour, **params)
        with pytest.raises(ProviderError) as info:
            prov.generate(request_for(path, timeout=0.5))
        err = info.value
        secrets = (API_KEY, API_KEY[::-1])
        for text in (str(err), err.user_message, err.detail, repr(err.args)):
            assert not any(s in text for s in secrets), (behaviour, text)
        assert err.__cause__ is None and err.__context__ is None  # no chained SDK exception with headers
    assert API_KEY not in caplog.text and API_KEY[::-1] not in caplog.text


def test_fake_server_scriptable_over_http(server):
    httpx.post(server.root_url + "/_fake/plan", json={"behaviour": "500", "times": 1}).raise_for_status()

    make_provider(server).generate(make_request())

    summary = httpx.get(server.root_url + "/_fake/requests").json()
    assert [r["status"] for r in summary] == [500, 200]


@pytest.mark.parametrize(("concurrency", "pools"), [(1000, 63), (16, 1), (17, 2)])
def test_provider_calls_spread_over_pools_that_hold_the_whole_concurrency(server, settings, concurrency, pools):
    """As many connections as calls in flight, in pools of at most POOL_SHARD_SIZE (httpcore walks
    a whole pool per request), taken in turn; one TLS context for all of them."""
    from workers.providers import openai_images

    settings.CELERY_WORKER_CONCURRENCY = concurrency
    provider = make_provider(server)
    clients = [next(provider._clients) for _ in range(pools)]
    assert len({id(client) for client in clients}) == pools and next(provider._clients) is clients[0]
    sizes = [client._client._transport._pool._max_connections for client in clients]
    assert sum(sizes) >= concurrency and max(sizes) <= openai_images.POOL_SHARD_SIZE
    assert len({id(client._client._transport._pool._ssl_context) for client in clients}) == 1
    assert [len(provider.generate(make_request()).images) for _ in range(pools + 1)] == [1] * (pools + 1)
