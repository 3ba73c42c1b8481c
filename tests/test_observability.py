"""Metrics and logs as an operator reads them: /metrics on the web (added up across gunicorn
processes) and on a worker's port, JSON log lines that carry the same ids in web and worker."""

import io
import json
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import structlog
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from hub.infra.logs import formatter as log_formatter
from tests.conftest import WebProcess, WorkerProcess, free_port
from tests.factories import make_key, make_user
from tests.reconcile import assert_reconciled

TOKEN = "metrics-token-0123456789abcdef"
BODY = {"model": "gpt-image-2", "prompt": "A lighthouse", "size": "1024x1024", "quality": "low", "n": 1}


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted label pairs): value} of a Prometheus text exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: dict, name: str, **labels) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def log_lines(text: str) -> list[dict]:
    """The JSON log lines of a process's output (Celery's start-up banner is not a log line)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.django_db
def test_metrics_are_off_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "notFound"


@pytest.mark.django_db
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789", TOKEN, f"Basic {TOKEN}"])
def test_metrics_need_the_bearer_token(client, settings, authorization):
    settings.METRICS_TOKEN = TOKEN
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = client.get("/metrics", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in response.content.decode()


@pytest.mark.django_db
def test_metrics_with_the_token(client, settings):
    settings.METRICS_TOKEN = TOKEN
    client.get("/api/v1/credits")  # 401: no key
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    metrics = samples(response.content.decode())
    assert value(metrics, "hub_http_requests_total", route="api/v1/credits", method="GET", status="401") >= 1
    assert ("hub_generations_unfinished", (("status", "queued"),)) in metrics
    if settings.REDIS_URL:  # the Redis list KEDA scales on; the embedded broker has none
        assert ("hub_queue_depth", (("queue", settings.GENERATIONS_QUEUE),)) in metrics


@pytest.mark.django_db
def test_metrics_answer_a_scrape_by_pod_address_over_plain_http(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.SECURE_SSL_REDIRECT = True  # production behind the TLS proxy; a scraper comes in plain HTTP
    response = client.get("/metrics", HTTP_HOST="10.42.0.17:8000", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert b"hub_http_requests_total" in response.content
    assert client.get("/api/v1/models", HTTP_HOST="10.42.0.17:8000").status_code == 400  # the rest still checks


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("lb-7f3a.2", True), ("0af7651916cd43dd8448eb211c80319c", True), ("has space", False), ("x" * 129, False)],
)
@pytest.mark.django_db
def test_request_id_is_taken_when_plain_and_always_returned(client, sent, kept):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=sent)
    returned = response["X-Request-ID"]
    assert (returned == sent) is kept
    assert kept or returned.startswith("req_")


def test_a_key_or_token_quoted_in_a_message_is_masked():
    options = {name: value for name, value in log_formatter("json").items() if name != "()"}
    secret = "gih_live_AbC4" + "s3cr3t" * 6
    record = logging.LogRecord(
        "hub", logging.INFO, __file__, 1, "header %s, key %s", (f"Bearer {secret}", secret), None
    )
    line = json.loads(structlog.stdlib.ProcessorFormatter(**options).format(record))
    assert "s3cr3t" not in line["event"]
    assert line["event"] == "header Bearer [redacted], key gih_live_[redacted]"


@pytest.mark.django_db
def test_a_refused_request_is_logged_as_a_warning_without_its_query_string(client):
    (console,) = [handler for handler in logging.getLogger().handlers if handler.get_name() == "console"]
    written = io.StringIO()
    previous = console.setStream(written)  # the configured handler, filters and formatter
    try:
        query = "&".join(f"f{index}=token-{index}-secret" for index in range(1001))  # too many fields: 400
        assert client.get(f"/account/login/?{query}").status_code == 400
        assert client.get(f"/api/v1/models?{query}").status_code == 400
    finally:
        console.setStream(previous)
    lines = log_lines(written.getvalue())
    assert "secret" not in json.dumps(lines)
    refused = [line for line in lines if line["logger"].startswith("django.security.")]
    assert [(line["level"], line["request"]) for line in refused] == [("warning", "GET /account/login/")]
    bad_request = [line for line in lines if line["logger"] == "django.request"]
    assert [line["request"] for line in bad_request] == ["GET /api/v1/models"]


@pytest.fixture
def stack(tmp_path):
    """Two gunicorn processes and a worker on a private queue, metrics on, JSON logs."""
    queue = f"obs-{uuid.uuid4().hex[:8]}"
    common = {"HUB_GENERATIONS_QUEUE": queue, "HUB_METRICS_TOKEN": TOKEN, "LOG_FORMAT": "json"}
    multiproc_dir = tmp_path / "metrics"
    web = WebProcess(
        processes=2, env_overrides={**common, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir), "LOG_LEVEL": "INFO"}
    )
    web.args[-2:] = ["--log-level", "info"]
    worker_port = free_port()
    worker = WorkerProcess(name="obs", queues=queue, env_overrides={**common, "HUB_METRICS_PORT": str(worker_port)})
    web.start(), worker.start()
    yield web, worker, f"http://127.0.0.1:{worker_port}/metrics", multiproc_dir
    web.stop(), worker.stop()


def scrape(url: str) -> dict:
    response = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return samples(response.text)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_web_and_worker_metrics_and_logs_follow_a_generation(stack):
    web, worker, worker_metrics, multiproc_dir = stack
    user = make_user(credits=100)
    raw = make_key(user)
    auth = {"Authorization": f"Bearer {raw}"}

    ok = httpx.post(
        f"{web.base_url}/api/v1/images/generations", json=BODY, headers={**auth, "X-Request-ID": "rq-ok-1"}, timeout=60
    )
    assert ok.status_code == 200, ok.text
    assert ok.headers["X-Request-ID"] == "rq-ok-1"
    failing = {**BODY, "prompt": "A lighthouse [fail]"}
    failed = httpx.post(f"{web.base_url}/api/v1/images/generations", json=failing, headers=auth, timeout=60)
    assert failed.status_code == 500, failed.text  # the contract: generationFailed
    generation_id = ok.json()["id"]

    # The worker counts what it finished, and the provider's failure by kind.
    at_worker = scrape(worker_metrics)
    assert value(at_worker, "hub_generations_finished_total", model="gpt-image-2", status="succeeded") == 1
    assert value(at_worker, "hub_generations_finished_total", model="gpt-image-2", status="failed") == 1
    assert value(at_worker, "hub_generation_duration_seconds_count", model="gpt-image-2", status="succeeded") == 1
    assert value(at_worker, "hub_provider_errors_total", kind="failed") == 1
    assert value(at_worker, "hub_credits_total", direction="refunded") == 2  # low 1024²: 2 credits
    # The answer that came back took a finishing turn at once; the provider's failure took none.
    assert value(at_worker, "hub_worker_finishing_wait_seconds_count") == 1
    assert value(at_worker, "hub_worker_finishing_ungated_total") == 0
    assert httpx.get(worker_metrics, timeout=5).status_code == 401

    # Requests spread over both gunicorn processes; /metrics adds their counts up.
    def models() -> int:
        return httpx.get(f"{web.base_url}/api/v1/models", headers=auth, timeout=10).status_code

    sent = 0
    with ThreadPoolExecutor(16) as pool:
        while len(list(Path(multiproc_dir).glob("counter_*.db"))) < 2 and sent < 2000:
            assert set(pool.map(lambda _: models(), range(32))) == {200}
            sent += 32
    assert len(list(Path(multiproc_dir).glob("counter_*.db"))) == 2
    at_web = scrape(f"{web.base_url}/metrics")
    assert value(at_web, "hub_http_requests_total", route="api/v1/models", method="GET", status="200") == sent
    assert value(at_web, "hub_http_request_duration_seconds_count", route="api/v1/models", method="GET") == sent
    route = "api/v1/images/generations"
    assert value(at_web, "hub_http_requests_total", route=route, method="POST", status="200") == 1
    assert value(at_web, "hub_http_requests_total", route=route, method="POST", status="500") == 1
    assert value(at_web, "hub_credits_total", direction="charged") == 4
    assert value(at_web, "hub_sync_waits_in_flight") == 0
    assert value(at_web, "hub_queue_depth", queue=settings.GENERATIONS_QUEUE) == 0

    # One JSON object per line; the web's and the worker's lines for the generation carry the
    # same request id, generation id and account id; the key is in neither.
    web_lines, worker_lines = log_lines(web.output()), log_lines(worker.output())
    assert all(line.strip().startswith("{") for line in web.output().splitlines() if line.strip())
    ids = {"request_id": "rq-ok-1", "generation_id": generation_id, "account_id": user.pk}
    for lines in (web_lines, worker_lines):
        mine = [line for line in lines if line.get("generation_id") == generation_id]
        assert mine and all({k: line.get(k) for k in ids} == ids for line in mine), mine
    # The request's access line says what it made and charged (low 1024²: 2 credits).
    assert any(
        line["logger"] == "hub.access" and line.get("status") == 200 and line.get("credits_charged") == 2
        for line in web_lines
        if line.get("request_id") == "rq-ok-1" and line.get("generation_id") == generation_id
    )
    assert raw not in web.output() + worker.output()
    assert_reconciled()


@pytest.mark.django_db
def test_a_scrape_skips_what_is_down_and_still_answers(client, settings):
    from hub.celery import app

    settings.METRICS_TOKEN = TOKEN
    broker = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:9/0"  # nothing listens there
    try:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    finally:
        app.conf.broker_url = broker
    assert response.status_code == 200
    metrics = samples(response.content.decode())
    assert not any(name == "hub_queue_depth" for name, _ in metrics)
    assert ("hub_generations_unfinished", (("status", "running"),)) in metrics
