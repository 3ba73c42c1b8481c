"""Graceful shutdown of the web (deploy/gunicorn.conf.py, hub/infra/shutdown.py): on SIGTERM, in-flight
sync waits finish within the grace period, or are answered 202 with their poll_url."""

import os
import signal
import threading
import time
import uuid

import httpx
import pytest

from hub.infra import shutdown
from tests.conftest import WebProcess, purge_queues, until


@pytest.fixture
def fresh_shutdown(monkeypatch):
    monkeypatch.setattr(shutdown, "_stop_at", None)
    monkeypatch.setattr(shutdown, "_callbacks", [])


def test_request_stop_sets_a_deadline_that_only_moves_forward(fresh_shutdown):
    assert not shutdown.stopping() and shutdown.seconds_left() is None
    shutdown.request_stop(within=30)
    assert shutdown.stopping() and 29 < shutdown.seconds_left() <= 30
    shutdown.request_stop(within=60)
    assert shutdown.seconds_left() <= 30
    shutdown.request_stop(within=0)
    assert shutdown.seconds_left() == 0


def test_on_stop_callbacks_run_when_stop_is_requested_and_after(fresh_shutdown):
    calls = []
    shutdown.on_stop(lambda: calls.append("early"))
    shutdown.on_stop(lambda: 1 / 0)  # a failing callback does not stop the others
    assert calls == []
    shutdown.request_stop(within=5)
    assert calls == ["early"]
    shutdown.on_stop(lambda: calls.append("late"))
    assert calls == ["early", "late"]


def test_sigterm_tells_the_web_process_its_waits_must_answer_within_the_grace_period():
    web = WebProcess(env_overrides={"WEB_GRACEFUL_TIMEOUT": "8", "LOG_LEVEL": "INFO"}).start()
    try:
        (worker,) = web.worker_pids()
        os.kill(worker, signal.SIGTERM)
        assert until(
            lambda: "stop requested: in-flight waits answer within 5 s" in web.log_path.read_text(), timeout=10
        )
    finally:
        web.stop()


def _post_sync(base_url: str, raw: str, prompt: str, result: dict) -> None:
    try:
        result["response"] = httpx.post(
            f"{base_url}/api/v1/images/generations",
            json={"model": "gpt-image-2", "prompt": prompt, "n": 1},
            headers={"Authorization": f"Bearer {raw}"},
            timeout=60,
        )
    except httpx.HTTPError as exc:
        result["error"] = exc


def _sigterm_during_sync_wait(web: WebProcess, raw: str, prompt: str) -> tuple[dict, float]:
    from generations.models import Generation

    result = {}
    thread = threading.Thread(target=_post_sync, args=(web.base_url, raw, prompt, result))
    thread.start()
    assert until(lambda: Generation.objects.filter(prompt=prompt).exists(), timeout=10)
    time.sleep(0.5)  # the request is now waiting
    stopped = time.monotonic()
    web.proc.send_signal(signal.SIGTERM)  # the gunicorn master, as docker stop / the kubelet does
    thread.join(60)
    return result, time.monotonic() - stopped


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_sigterm_lets_an_in_flight_sync_wait_finish_within_the_grace_period(customer, celery_worker):
    _, raw, _ = customer
    web = WebProcess(env_overrides={"WEB_GRACEFUL_TIMEOUT": "20"}).start()
    try:
        result, _ = _sigterm_during_sync_wait(web, raw, "finishes after SIGTERM [sleep:3]")
        web.proc.wait(30)
    finally:
        web.stop()
    assert "error" not in result, result
    assert result["response"].status_code == 200
    assert result["response"].json()["status"] == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_sigterm_answers_a_wait_longer_than_the_grace_period_202_with_its_poll_url(customer):
    _, raw, _ = customer
    queue = f"unconsumed-{uuid.uuid4().hex[:8]}"  # no worker: the generation stays queued
    web = WebProcess(env_overrides={"WEB_GRACEFUL_TIMEOUT": "6", "HUB_GENERATIONS_QUEUE": queue}).start()
    try:
        result, took = _sigterm_during_sync_wait(web, raw, "outlasts the grace period")
        web.proc.wait(30)
    finally:
        web.stop()
        purge_queues(queue)
    assert "error" not in result, f"the wait was cut: {result}"
    assert result["response"].status_code == 202
    assert result["response"].json()["poll_url"].endswith(result["response"].json()["id"])
    assert took < 6, "answered within the grace period"
