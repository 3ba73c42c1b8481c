"""A generation's history: one event per transition, written in the transition's own statement or
transaction — so a transition that does not commit leaves none — and never written twice."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from generations.models import GenerationEvent
from generations.services import (
    ProviderCall,
    StoredImage,
    generation_cancel,
    generation_claim,
    generation_finalize,
    generation_requeue,
    lifecycle,
    submit,
)
from hub.http.errors import InsufficientCredits
from hub.infra import backends
from tests.factories import create_generation, make_user
from tests.reconcile import assert_reconciled

pytestmark = pytest.mark.django_db


def _history(generation_id: str) -> list[tuple]:
    events = GenerationEvent.objects.filter(generation_id=generation_id).order_by("created_at", "id")
    return [(e.kind, e.attempt, e.outcome, e.latency_ms, e.detail) for e in events]


def _stored(generation_id: str, n: int) -> list[StoredImage]:
    return [StoredImage(i, f"generations/{generation_id}/{i}.png", "image/png", 64, 48, 1000 + i) for i in range(n)]


def _call(claimed, images: int = 2, outcome: str = "ok") -> ProviderCall:
    """A provider call that started at the claim and has just ended."""
    return ProviderCall(claimed.started_at, 0, outcome, images=images)


@pytest.fixture(params=["one statement", "one by one"])
def path(request, monkeypatch):
    """PostgreSQL writes a transition's events in its statement; elsewhere (SQLite) after it, in
    its transaction: both write the same rows."""
    if request.param == "one by one":
        monkeypatch.setattr(lifecycle, "ONE_STATEMENT_TRANSITIONS", False)
        monkeypatch.setattr(submit, "ONE_STATEMENT_CREATE", False)
    return request.param


def test_a_delivered_generation_s_history(path):
    generation = create_generation(make_user(credits=100), n=2)
    with CaptureQueriesContext(connection) as claim:
        claimed = generation_claim(generation_id=generation.id)
    call = _call(claimed)
    with CaptureQueriesContext(connection) as finish:
        generation_finalize(generation_id=generation.id, attempt=1, images=_stored(generation.id, 2), call=call)
    assert _history(generation.id) == [
        ("queued", 0, "", None, {"credits": 4}),
        ("claimed", 1, "", None, {}),
        ("provider_call_started", 1, "", None, {}),
        ("provider_call_ended", 1, "ok", 0, {"images": 2}),
        ("succeeded", 1, "", None, {"images": 2}),
    ]
    if path == "one statement" and backends.dml_in_cte():  # no statement of their own
        # (The tests' catalog snapshot expires at once: the claim reads the model; not counted.)
        writes = [
            [q["sql"] for q in queries if "generations_imagemodel" not in q["sql"]] for queries in (claim, finish)
        ]
        assert [len(statements) for statements in writes] == [1, 1], writes
    assert_reconciled()


def test_a_partial_result_is_succeeded_then_refunded(path):
    generation = create_generation(make_user(credits=100), n=3)
    claimed = generation_claim(generation_id=generation.id)
    generation_finalize(generation_id=generation.id, attempt=1, images=_stored(generation.id, 2), call=_call(claimed))
    assert [event[:3] for event in _history(generation.id)][-2:] == [("succeeded", 1, ""), ("refunded", 1, "")]
    assert _history(generation.id)[-1][4] == {"credits": 2}


def test_a_provider_failure_is_failed_then_refunded(path):
    generation = create_generation(make_user(credits=100), n=2)
    claimed = generation_claim(generation_id=generation.id)
    error = ("provider_error", "The image provider failed")
    call = _call(claimed, 0, "failed")
    generation_finalize(generation_id=generation.id, attempt=1, images=[], error=error, call=call)
    assert _history(generation.id)[1:] == [
        ("claimed", 1, "", None, {}),
        ("provider_call_started", 1, "", None, {}),
        ("provider_call_ended", 1, "failed", 0, {}),
        ("failed", 1, "provider_error", None, {}),
        ("refunded", 1, "", None, {"credits": 4}),
    ]
    assert_reconciled()


def test_a_canceled_generation_s_history():
    owner = make_user(credits=100)
    generation = create_generation(owner, n=1)
    generation_cancel(owner=owner, generation_id=generation.id)
    generation_cancel(owner=owner, generation_id=generation.id)  # already canceled: nothing more
    assert [event[:3] for event in _history(generation.id)] == [
        ("queued", 0, ""),
        ("canceled", 0, "canceled"),
        ("refunded", 0, ""),
    ]


def test_a_lost_worker_s_attempt_is_retried(path):
    generation = create_generation(make_user(credits=100), n=1)
    generation_claim(generation_id=generation.id)
    type(generation).objects.filter(pk=generation.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert generation_requeue(generation_id=generation.id, attempt=1)
    assert not generation_requeue(generation_id=generation.id, attempt=1)  # once
    assert generation_claim(generation_id=generation.id).attempts == 2
    assert [event[:3] for event in _history(generation.id)] == [
        ("queued", 0, ""),
        ("claimed", 1, ""),
        ("retried", 1, "worker_lost"),
        ("claimed", 2, ""),
    ]


def test_a_claim_that_is_not_ours_and_a_stale_finish_write_no_event(path):
    generation = create_generation(make_user(credits=100), n=1)
    claimed = generation_claim(generation_id=generation.id)
    assert generation_claim(generation_id=generation.id) is None  # running under a live lease
    images = _stored(generation.id, 1)
    stale = generation_finalize(generation_id=generation.id, attempt=2, images=images, call=_call(claimed))
    assert stale.status == "running"
    assert [event[0] for event in _history(generation.id)] == ["queued", "claimed"]


def test_a_transition_rolled_back_leaves_no_event(path):
    generation = create_generation(make_user(credits=100), n=1)
    with pytest.raises(RuntimeError), transaction.atomic():
        generation_claim(generation_id=generation.id)
        raise RuntimeError("the claim's transaction does not commit")
    assert [event[0] for event in _history(generation.id)] == ["queued"]
    assert type(generation).objects.get(pk=generation.pk).status == "queued"


def test_a_refused_charge_leaves_no_generation_and_no_event(path):
    owner = make_user(credits=1)
    with pytest.raises(InsufficientCredits):
        create_generation(owner, n=1)
    assert not GenerationEvent.objects.exists()


def test_the_database_refuses_a_transition_recorded_twice():
    generation = create_generation(make_user(credits=100), n=1)
    generation_claim(generation_id=generation.id)
    with pytest.raises(IntegrityError), transaction.atomic():
        GenerationEvent.objects.create(generation=generation, kind="claimed", attempt=1, created_at=timezone.now())
