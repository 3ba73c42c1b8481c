import uuid

import pytest

from tests.conftest import forget_upstream_state
from tests.faults.conftest import fault_queue, start_worker  # noqa: F401 — fixtures: workers on a private queue
from upstreams.targets import Target

KEY = "sk-upstream-primary-0123456789abcdef"
OTHER_KEY = "sk-upstream-second-0123456789abcdef"


@pytest.fixture
def make_upstream(db, fake_openai):
    """make_upstream(name, key, **options) → an Upstream on the fake provider (its key accepted),
    serving gpt-image-1 unless `models` says otherwise; its shared state is dropped afterwards."""
    from upstreams.services import upstream_create

    made = []

    def make(name: str, key: str, **options):
        fake_openai.key(key)
        options.setdefault("models", {"gpt-image-1": ""})
        upstream = upstream_create(name=name, adapter="openai", base_url=fake_openai.base_url, api_key=key, **options)
        made.append(upstream.pk)
        return upstream

    yield make
    for upstream_id in made:
        forget_upstream_state(upstream_id)


@pytest.fixture
def target():
    """target(**fields) → a Target with no row behind it (a fresh upstream id), for the budget's
    and circuit's scripts in Redis; its shared state is dropped afterwards."""
    made = []

    def make(**fields) -> Target:
        upstream_id = f"up_test{uuid.uuid4().hex}"
        made.append(upstream_id)
        return Target(upstream_id=upstream_id, name=fields.pop("name", upstream_id), adapter="openai", **fields)

    yield make
    for upstream_id in made:
        forget_upstream_state(upstream_id)
