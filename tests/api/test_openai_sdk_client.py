"""The official OpenAI SDK, pointed at the hub, already reads it (models.list, images.generate)."""

import openai
import pytest

from tests.conftest import fetch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def test_openai_sdk_lists_models_and_generates(live_server, customer, celery_worker, api):
    _, raw, _ = customer
    client = openai.OpenAI(base_url=f"{live_server.url}/api/v1", api_key=raw, max_retries=0)
    assert [m.id for m in client.models.list()] == ["gpt-image-2"]
    result = client.images.generate(model="gpt-image-2", prompt="sdk client", size="1024x1024", quality="low", n=1)
    assert result.created > 0
    assert fetch(api, result.data[0].url.replace(live_server.url, "http://testserver")).startswith(b"\x89PNG")
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.generate(model="nope", prompt="x")
    assert refused.value.body == {
        "message": "Unknown model 'nope'",
        "code": "invalid_request",
        "type": "invalid_request_error",
        "param": "model",
    }
