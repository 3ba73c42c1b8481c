"""OPENAI_POST (hub/infra/fastpaths/openai_post.py): a generation POSTed on the adapter's own pool
reaches the provider as the SDK's call does — method, path, body and headers — and comes back as
the same images, or the same failure."""

import time

import pytest

from tests.fakes.openai_server import FakeOpenAIServer
from tests.fastpaths.conftest import fast_path
from workers.providers.base import ProviderError, ProviderRequest
from workers.providers.openai_images import OpenAIImagesProvider

API_KEY = "sk-test-SECRET-0123456789abcdef"
READ_TIMEOUT = "x-stainless-read-timeout"  # the time left: differs by microseconds


@pytest.fixture
def server():
    with FakeOpenAIServer(api_key=API_KEY) as srv:
        yield srv


def _generate(server, on: bool, plan: tuple = ()):
    """What the provider received and what the adapter answered, the fast path on or off."""
    server.reset()
    for behaviour, params in plan:
        server.plan(behaviour, **params)
    with fast_path("OPENAI_POST", on):
        provider = OpenAIImagesProvider(api_key=API_KEY, base_url=server.base_url, backoff_base=0.01)
    assert (provider._plain is not None) is on
    request = ProviderRequest(
        model="gpt-image-1",
        prompt="two owls",
        size="96x64",
        quality="high",
        n=2,
        deadline=time.monotonic() + 10,
        references=[],
    )
    try:
        generated = provider.generate(request)  # the fake draws each answer afresh: compared with what it sent
        images = generated.images
        answer = ("images", len(images), images == server.requests[-1].response_images, generated.usage)
    except ProviderError as exc:
        answer = (exc.user_message, exc.permanent, exc.kind)
    received = [
        (r.method, r.path, r.body, r.status, sorted(line for line in r.header_lines if line[0] != READ_TIMEOUT))
        for r in server.requests
    ]
    return received, answer


@pytest.mark.parametrize(
    "plan",
    [
        (),
        (("500", {"times": 1}), ("429", {"retry_after": 0})),
        (("400", {"message": "Rejected by the safety system.", "code": "moderation_blocked"}),),
        (("malformed", {}),),
    ],
    ids=["images", "retried", "rejected", "malformed"],
)
def test_the_provider_receives_and_the_adapter_answers_alike(server, plan, monkeypatch):
    monkeypatch.setenv("OPENAI_ORG_ID", "org-test")
    fast, library = _generate(server, True, plan), _generate(server, False, plan)
    assert fast == library
    if not plan:
        assert fast[1][:3] == ("images", 2, True)
    assert fast[0] and all(received[1] == "/v1/images/generations" for received in fast[0])
