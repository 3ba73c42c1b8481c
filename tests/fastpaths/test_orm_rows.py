"""ORM_ROWS (hub/infra/fastpaths/orm_rows.py): the hot paths' reads and RETURNING rows become the same
model instances — and the API the same answers — whether the fast path builds them or Django."""

import json

import pytest

from apikeys.services import api_key_authenticate
from billing.lock_objects import account_and_grants_lock
from billing.models import CreditAccount
from billing.selectors import credits_summary_for_user
from generations.models import Generation
from generations.selectors import generation_get_for_owner_api, images_of
from generations.services.lifecycle import generation_claim
from tests.factories import bearer, create_generation, make_generation, make_key, make_user
from tests.fastpaths.conftest import fast_path

pytestmark = pytest.mark.django_db


def _values(instance, seen=()) -> dict:
    """Every field's value, and the select_related objects' and annotations' the read carries
    (an object already on the way down, set back on its related one, by its model's name)."""
    values = {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}
    seen = (*seen, instance)
    for name, related in instance._state.fields_cache.items():
        if related is None or any(related is s for s in seen):
            values[name] = None if related is None else type(related).__name__
        else:
            values[name] = _values(related, seen)
    extra = set(vars(instance)) - set(values) - {"_state", "_prefetched_objects_cache"}
    values.update({name: getattr(instance, name) for name in extra if not name.startswith("_")})
    return values


def _both(read):
    with fast_path("ORM_ROWS", True):
        fast = read()
    with fast_path("ORM_ROWS", False):
        library = read()
    return fast, library


def test_the_hot_reads_give_the_instances_django_builds():
    owner = make_user(credits=100)
    raw_key = make_key(owner)
    done = make_generation(owner, n=2, delivered=1)

    fast, library = _both(lambda: generation_get_for_owner_api(owner=owner, generation_id=done.id))
    assert _values(fast) == _values(library)
    fast, library = _both(lambda: [_values(image) for image in images_of(done)])
    assert fast == library and len(fast) == 1
    fast, library = _both(lambda: api_key_authenticate(raw_key))
    assert _values(fast) == _values(library) and fast.owner == owner
    fast, library = _both(lambda: credits_summary_for_user(user_id=owner.pk))
    assert fast == library


def test_the_account_lock_gives_the_same_rows_pipelined_or_not():
    owner = make_user(credits=100)
    account = CreditAccount.objects.get(user=owner)

    def locked():
        from django.db import transaction

        with transaction.atomic():
            row, grants = account_and_grants_lock(account)
            return _values(row), [_values(grant) for grant in grants]

    fast, library = _both(locked)
    assert fast == library and fast[1]


def test_a_claim_returns_the_row_as_django_reads_it():
    owner = make_user(credits=100)
    for on in (True, False):
        generation = create_generation(owner)
        with fast_path("ORM_ROWS", on):
            claimed = generation_claim(generation_id=generation.id)
        fields = [field.attname for field in Generation._meta.concrete_fields]
        row = Generation.objects.get(pk=generation.pk)
        assert [getattr(claimed, name) for name in fields] == [getattr(row, name) for name in fields]
        assert (claimed.status, claimed.attempts, claimed._state.adding) == ("running", 1, False)


def test_the_api_answers_alike(api):
    owner = make_user(credits=100)
    auth = bearer(make_key(owner))
    done = make_generation(owner, n=2, delivered=2)
    body = {"model": "gpt-image-2", "prompt": "a fox", "size": "1024x1024", "quality": "low", "async": True}

    def answers():
        submitted = api.post(
            "/api/v1/images/generations", data=json.dumps(body), content_type="application/json", **auth
        )
        polled = api.get(f"/api/v1/generations/{done.id}", **auth)
        credits = api.get("/api/v1/credits", **auth)
        return submitted, polled, credits

    (fast_submit, fast_poll, fast_credits), (library_submit, library_poll, library_credits) = _both(answers)
    assert (fast_submit.status_code, library_submit.status_code) == (202, 202)
    ignore = {"id", "created", "created_at", "poll_url"}  # its own; `created` in seconds: a tick apart
    assert {k: v for k, v in fast_submit.json().items() if k not in ignore} == {
        k: v for k, v in library_submit.json().items() if k not in ignore
    }
    assert fast_poll.status_code == library_poll.status_code == 200
    assert _without_url_queries(fast_poll.json()) == _without_url_queries(library_poll.json())
    assert fast_credits.status_code == library_credits.status_code == 200
    fast_balance, library_balance = fast_credits.json(), library_credits.json()
    assert fast_balance.pop("credits") == library_balance.pop("credits") + 2  # the second submit's charge
    assert fast_balance == library_balance


def _without_url_queries(answer: dict) -> dict:
    """Image URLs are signed with the time they were made: compared without their query."""
    answer = dict(answer)
    answer["images"] = [{**image, "url": image["url"].split("?")[0]} for image in answer["images"]]
    answer["data"] = [{**datum, "url": datum["url"].split("?")[0]} for datum in answer["data"]]
    return answer
