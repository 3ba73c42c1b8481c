"""Cancel (owner-only, idempotent, refunded, fenced against a late attempt) and `Prefer: wait=N`."""

import time

import pytest

from billing.models import CreditAccount
from generations.models import Generation
from tests.factories import bearer, make_key, make_user
from tests.reconcile import assert_reconciled

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]
URL = "/api/v1/images/generations"
SLOW = {"model": "gpt-image-2", "prompt": "slow [sleep:3]", "size": "1024x1024", "quality": "low"}
# Longer than a 1 s wait by far more than a loaded machine stretches the request around it.
SLOWER = {**SLOW, "prompt": "slower [sleep:6]"}


def _wait_for(generation_id, statuses, timeout=30):
    deadline = time.monotonic() + timeout
    while (generation := Generation.objects.get(pk=generation_id)).status not in statuses:
        assert time.monotonic() < deadline, generation.status
        time.sleep(0.1)
    return generation


@pytest.mark.slow
def test_cancel_refunds_a_running_generation_once_and_a_late_attempt_changes_nothing(api, customer, celery_worker):
    user, _, auth = customer
    created = api.post(URL, {**SLOW, "async": True}, format="json", **auth).json()
    _wait_for(created["id"], {"running"})
    canceled = api.post(f"/api/v1/generations/{created['id']}/cancel", **auth)
    assert canceled.status_code == 200
    body = canceled.json()
    assert (body["status"], body["usage"]) == (
        "canceled",
        {"credits": 0, "credits_requested": 2, "credits_refunded": 2},
    )
    again = api.post(f"/api/v1/generations/{created['id']}/cancel", **auth)
    assert (again.status_code, again.json()["status"]) == (200, "canceled")
    other = bearer(make_key(make_user()))
    assert api.post(f"/api/v1/generations/{created['id']}/cancel", **other).status_code == 404
    time.sleep(3.5)  # the attempt's provider call ends; its finalize is fenced off
    generation = Generation.objects.get(pk=created["id"])
    assert (generation.status, generation.images.count()) == ("canceled", 0)
    assert CreditAccount.objects.get(user=user).balance == 120
    assert_reconciled()


def test_cancel_after_success_answers_the_generation_as_it_is(api, customer, celery_worker):
    _, _, auth = customer
    done = api.post(URL, {**SLOW, "prompt": "quick"}, format="json", **auth).json()
    answer = api.post(f"/api/v1/generations/{done['id']}/cancel", **auth)
    assert (answer.status_code, answer.json()["status"]) == (200, "succeeded")


def test_prefer_wait_hands_over_the_poll_url_without_failing_or_refunding(api, customer, celery_worker):
    user, _, auth = customer
    started = time.monotonic()
    response = api.post(URL, SLOWER, format="json", HTTP_PREFER="wait=1", **auth)
    assert time.monotonic() - started < 5
    assert response.status_code == 202
    assert response["Preference-Applied"] == "wait=1"
    body = response.json()
    assert body["status"] in ("queued", "running") and body["poll_url"].endswith(body["id"])
    assert _wait_for(body["id"], {"succeeded", "failed"}).status == "succeeded"
    assert CreditAccount.objects.get(user=user).balance == 118
    assert_reconciled()


QUICK = {**SLOW, "prompt": "quick"}


def test_prefer_names_are_case_insensitive_and_the_first_wait_counts(api, customer, celery_worker):
    """RFC 7240: `wait` after a `;` is a parameter of another preference, not the wait."""
    _, _, auth = customer
    cases = {
        "WAIT=0": "wait=0",
        "respond-async, Wait = 0.0504": "wait=0.05",
        'handling=lenient; wait=600, wait="0"': "wait=0",
        "wait=0, wait=600": "wait=0",
        "wait=0.0001": "wait=0",
    }
    for prefer, applied in cases.items():
        response = api.post(URL, QUICK, format="json", HTTP_PREFER=prefer, **auth)
        assert response.status_code in (200, 202)
        assert response["Preference-Applied"] == applied, prefer


@pytest.mark.parametrize("value", ["-1", "abc", "1e3", "inf", "nan", "", "1_0", "0x10", "+1"])
def test_an_unreadable_wait_is_ignored(api, customer, celery_worker, value):
    _, _, auth = customer
    response = api.post(URL, QUICK, format="json", HTTP_PREFER=f"wait={value}", **auth)
    assert response.status_code == 200
    assert "Preference-Applied" not in response


def test_past_the_hubs_sync_wait_a_request_gets_its_poll_url(api, customer, celery_worker, settings):
    """HUB_SYNC_WAIT_SECONDS (below a proxy's idle cut): a 202 like `Prefer: wait`'s; a shorter
    Prefer still counts, a longer one is held to the hub's, and Preference-Applied says which."""
    user, _, auth = customer
    settings.SYNC_WAIT_SECONDS = 1
    started = time.monotonic()
    response = api.post(URL, SLOWER, format="json", **auth)
    assert time.monotonic() - started < 5
    assert response.status_code == 202
    assert "Preference-Applied" not in response  # the client asked for nothing
    body = response.json()
    assert body["status"] in ("queued", "running") and body["poll_url"].endswith(body["id"])
    longer = api.post(URL, SLOWER, format="json", HTTP_PREFER="wait=30", **auth)
    assert (longer.status_code, longer["Preference-Applied"]) == (202, "wait=1")
    shorter = api.post(URL, SLOWER, format="json", HTTP_PREFER="wait=0.2", **auth)
    assert (shorter.status_code, shorter["Preference-Applied"]) == (202, "wait=0.2")
    for generation in (body, longer.json(), shorter.json()):
        assert _wait_for(generation["id"], {"succeeded", "failed"}).status == "succeeded"
    assert CreditAccount.objects.get(user=user).balance == 120 - 3 * 2
    assert_reconciled()
