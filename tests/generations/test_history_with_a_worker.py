"""A generation's history as a real worker process writes it (the session's worker, the local
provider and its prompt directives); a lost worker's retry is in tests/faults/test_worker_crash.py."""

import pytest

from generations.models import GenerationEvent
from tests.conftest import until
from tests.faults.conftest import wait_for_status
from tests.reconcile import assert_reconciled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
URL = "/api/v1/images/generations"
BODY = {"model": "gpt-image-2", "prompt": "A lighthouse at dawn", "size": "1024x1024", "quality": "low", "n": 2}


def _history(generation_id: str) -> list[GenerationEvent]:
    return list(GenerationEvent.objects.filter(generation_id=generation_id).order_by("created_at", "id"))


def _steps(events: list[GenerationEvent]) -> list[tuple[str, int, str]]:
    return [(event.kind, event.attempt, event.outcome) for event in events]


def test_a_delivered_generation_s_history(api, customer, celery_worker):
    response = api.post(URL, data=BODY, format="json", **customer[2])
    assert response.status_code == 200, response.content
    events = _history(response.json()["id"])
    assert _steps(events) == [
        ("queued", 0, ""),
        ("claimed", 1, ""),
        ("provider_call_started", 1, ""),
        ("provider_call_ended", 1, "ok"),
        ("succeeded", 1, ""),
    ]
    started, ended, succeeded = events[2:]
    assert ended.detail == {"images": 2} and ended.latency_ms is not None
    assert started.created_at <= ended.created_at <= succeeded.created_at
    assert_reconciled()


def test_a_provider_failure_s_history(api, customer, celery_worker):
    response = api.post(URL, data={**BODY, "prompt": "A fox [fail]"}, format="json", **customer[2])
    assert response.status_code == 500
    events = _history(response.json()["error"]["generation_id"])
    assert _steps(events)[2:] == [
        ("provider_call_started", 1, ""),
        ("provider_call_ended", 1, "failed"),
        ("failed", 1, "provider_error"),
        ("refunded", 1, ""),
    ]
    assert events[-1].detail == {"credits": 4}
    assert_reconciled()


def test_a_partial_result_s_history(api, customer, celery_worker):
    response = api.post(URL, data={**BODY, "prompt": "A fox [partial:1]"}, format="json", **customer[2])
    assert response.status_code == 200
    events = _history(response.json()["id"])
    assert _steps(events)[3:] == [("provider_call_ended", 1, "ok"), ("succeeded", 1, ""), ("refunded", 1, "")]
    assert (events[3].detail, events[4].detail, events[5].detail) == ({"images": 1}, {"images": 1}, {"credits": 2})
    assert_reconciled()


def test_a_generation_canceled_during_its_provider_call(api, customer, celery_worker):
    """The attempt's finish comes after the cancel: stale, it records nothing (not even its call)."""
    body = {**BODY, "prompt": "A fox [sleep:1.5]", "async": True}
    generation_id = api.post(URL, data=body, format="json", **customer[2]).json()["id"]
    wait_for_status(generation_id, ["running"])
    assert api.post(f"/api/v1/generations/{generation_id}/cancel", **customer[2]).json()["status"] == "canceled"
    stale = f"generation {generation_id}: stale attempt 1 ignored"
    assert until(lambda: stale in celery_worker.log_path.read_text(), timeout=15)
    assert _steps(_history(generation_id)) == [
        ("queued", 0, ""),
        ("claimed", 1, ""),
        ("canceled", 1, "canceled"),
        ("refunded", 1, ""),
    ]
    assert_reconciled()
