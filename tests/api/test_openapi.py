"""The OpenAPI schema is generated from the code, served with a docs page, and holds: schemathesis
drives every operation of the live production server (deploy/bin/web) and finds no 5xx and no
response outside the schema."""

import pytest
import schemathesis
from gunicorn.config import LimitRequestLine
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from tests.conftest import WebProcess
from tests.factories import make_key, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
GUNICORN_REQUEST_LINE_LIMIT = LimitRequestLine.default  # deploy/bin/web keeps gunicorn's default
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
OPERATIONS = {
    "GET /api/v1/models",
    "GET /api/v1/models/{model_id}",
    "GET /api/v1/credits",
    "GET /api/v1/credit-packs",
    "POST /api/v1/credit-packs/{pack_id}/checkout",
    "GET /api/v1/usage",
    "POST /api/v1/images/generations",
    "POST /api/v1/images/edits",
    "GET /api/v1/generations/{generation_id}",
    "POST /api/v1/generations/{generation_id}/cancel",
    "GET /api/v1/generations/{generation_id}/events",
}


def _ref(schema: dict) -> str:
    """The component a property or response points at (drf-spectacular may wrap it in allOf)."""
    ref = schema.get("$ref") or schema["allOf"][0]["$ref"]
    return ref.rsplit("/", 1)[1]


def test_the_schema_and_its_docs_page_are_served(api):
    schema = api.get("/api/v1/openapi.json").json()
    assert {f"{m.upper()} {p}" for p, ops in schema["paths"].items() for m in ops} == OPERATIONS
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer gih_live_…`",
    }
    generate = schema["paths"]["/api/v1/images/generations"]["post"]
    assert {p["name"] for p in generate["parameters"]} >= {"Idempotency-Key", "Prefer"}
    assert set(generate["responses"]) == {"200", "202", "400", "401", "402", "403", "409", "429", "500"}
    assert set(generate["responses"]["429"]["headers"]) >= {
        "Retry-After",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    }
    components = schema["components"]["schemas"]
    answer = components[_ref(generate["responses"]["200"]["content"]["application/json"]["schema"])]
    usage = components[_ref(answer["properties"]["usage"])]
    assert set(usage["properties"]) == {
        "credits",
        "credits_requested",
        "credits_refunded",
        "input_tokens",
        "input_tokens_details",
        "output_tokens",
        "total_tokens",
    }
    assert set(usage["required"]) == {"credits", "credits_requested"}  # OpenAI's tokens: when reported
    events = schema["paths"]["/api/v1/generations/{generation_id}/events"]["get"]
    assert set(events["responses"]["200"]["content"]) == {"text/event-stream"}
    docs = api.get("/api/docs")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_schema(unconsumed_queue):
    raw = make_key(make_user(credits=10**7))
    web = WebProcess(env_overrides={"HUB_GENERATIONS_QUEUE": unconsumed_queue}).start()
    # Every sync request is handed its poll_url at once (no worker runs here).
    headers = {"Authorization": f"Bearer {raw}", "Prefer": "wait=0"}
    try:
        schema = schemathesis.openapi.from_url(f"{web.base_url}/api/v1/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {f"{op.method.upper()} {op.path}" for op in operations} == OPERATIONS
        for operation in operations:
            # Negative cases need something to break: a body, a path, query or header parameter.
            parts = (operation.body, operation.path_parameters, operation.query, operation.headers)
            modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if any(map(len, parts)) else [])
            for mode in modes:
                _exercise(operation, mode, web.base_url, headers)
    finally:
        web.stop()


def _exercise(operation, mode, base_url, headers):
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        if isinstance(case.body, dict) and case.body.get("stream") is True:
            case.body["stream"] = False  # a stream waits for its generation, and no worker runs here
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        if response.status_code == 414:
            # gunicorn refuses a request line over its limit (4094 bytes) before the hub sees it:
            # random query parameters can be that long. A short one must never be refused so.
            request_line = f"{response.request.method} {response.request.path_url} HTTP/1.1"
            assert len(request_line) > GUNICORN_REQUEST_LINE_LIMIT, request_line
            return
        case.validate_response(response, checks=CHECKS)

    run()
