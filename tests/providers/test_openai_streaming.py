"""A streamed generation's provider call (ProviderRequest.partial_images): the adapter asks the
upstream to stream, hands each partial image on as it comes — before the call ends — and still
answers with the completed images and their usage; on both of its paths."""

import base64
import json
import time

import pytest

from tests.fakes.openai_server import FakeOpenAIServer
from tests.providers.test_openai_images import API_KEY, make_provider, png, request_for
from workers.providers.base import ProviderError, ProviderRequest
from workers.providers.openai_images import OpenAIImagesProvider
from workers.providers.openai_protocol import sse_data

LATENCY = 1.2


@pytest.fixture
def server():
    with FakeOpenAIServer(api_key=API_KEY) as srv:
        yield srv


@pytest.fixture(params=["plain", "sdk"])
def path(request):
    return request.param


def streamed(path, partials, **kwargs):
    """A request asking for `partials` partial images, and what it hands on: (when, the partial)."""
    received = []
    request = request_for(path, **kwargs)
    fields = {name: getattr(request, name) for name in ProviderRequest.__dataclass_fields__}
    fields.update(partial_images=partials, on_partial=lambda p: received.append((time.monotonic(), p)))
    return ProviderRequest(**fields), received


def test_partials_are_handed_on_before_the_call_ends(server, path):
    server.plan("slow", seconds=LATENCY)
    request, received = streamed(path, 2, n=2)
    provider = make_provider(server)

    generated = provider.generate(request)

    ended = time.monotonic()
    (sent,) = server.requests
    assert sent.body["stream"] in (True, "true") and str(sent.body["partial_images"]) == "2"
    assert generated.images == sent.response_images and len(generated.images) == 2
    assert generated.usage is not None and generated.usage.output_image > 0
    # each image's two partials, as the provider sent them (the k-th with an index is image k's)
    assert [(p.image_index, p.partial_image_index) for _, p in received] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert [base64.b64decode(p.b64_json) for _, p in received] == sent.response_partials
    # as they came (the fake's rounds at a third and two thirds of its latency), not at the end
    assert received[0][0] + LATENCY / 6 < received[-1][0] < ended - LATENCY / 6


def test_a_stream_that_ends_in_an_error_event_fails_and_is_not_retried(server, path):
    server.plan("stream_error", message="The image could not be generated.", times=None)
    request, received = streamed(path, 1)

    with pytest.raises(ProviderError) as failed:
        make_provider(server).generate(request)

    assert failed.value.kind == "failed" and not failed.value.permanent
    assert "The image could not be generated." in failed.value.detail
    assert len(received) == 1 and len(server.requests) == 1  # the partial came; not sent again


def test_a_stream_past_the_deadline_times_out(server, path):
    server.plan("slow", seconds=5, times=None)
    request, _ = streamed(path, 3, timeout=1.0)
    started = time.monotonic()

    with pytest.raises(ProviderError, match="timed out"):
        make_provider(server).generate(request)
    assert time.monotonic() - started < 4  # the 1 s deadline, not the 5 s stream


def test_without_partials_nothing_is_streamed(server):
    make_provider(server).generate(request_for("plain"))

    assert "stream" not in server.requests[0].body


def test_server_sent_events_are_split_whatever_the_chunks():
    stream = b'event: a\ndata: {"x":1}\n\n: comment\n\nevent: b\r\ndata: {"y":\r\ndata: 2}\r\n\r\ndata: [DONE]\n\n'
    for size in (1, 3, 7, len(stream)):
        chunks = [stream[at : at + size] for at in range(0, len(stream), size)]
        assert list(sse_data(chunks)) == [b'{"x":1}', b'{"y":\n2}', b"[DONE]"]


def test_an_upstream_that_does_not_stream_still_answers(server):
    """An OpenAI-compatible server that ignores `stream` and answers JSON: its images, no partials."""
    provider = OpenAIImagesProvider(api_key=API_KEY, base_url=server.base_url, max_retries=0)
    body = {"created": 1, "data": [{"b64_json": base64.b64encode(png(4, 4)).decode()}]}
    server.plan("malformed", body=json.dumps(body))
    request, received = streamed("plain", 2)

    assert len(provider.generate(request).images) == 1 and received == []
