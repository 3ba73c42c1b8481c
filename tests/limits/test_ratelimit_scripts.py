"""The Redis scripts themselves: the sliding minute counts costs and gives them back; a slot
is taken once per member and frees on release."""

import uuid

import pytest
from django.conf import settings

from hub import ratelimit

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="the scripts run in Redis")


def test_sliding_minute_counts_costs_and_a_given_back_entry_frees_its_images():
    name = f"test-{uuid.uuid4().hex}"
    first = ratelimit.window_take(name=name, token="a", cost=3, limit=5)
    assert (first.allowed, first.used) == (True, 3)
    assert 59_000 <= first.reset_ms <= 60_000
    refused = ratelimit.window_take(name=name, token="b", cost=3, limit=5)
    assert (refused.allowed, refused.used) == (False, 3)
    assert 0 < refused.retry_after_ms <= 60_000  # when the first entry leaves the minute
    ratelimit.window_give_back(name=name, token="a", cost=3)
    assert ratelimit.window_take(name=name, token="c", cost=5, limit=5).allowed
    assert 0 < ratelimit.redis_client().pttl(f"hub:rl:img:{name}") <= 60_000  # expires when idle


def test_slots_are_taken_once_per_generation_and_freed_by_release():
    name = f"test-{uuid.uuid4().hex}"
    assert ratelimit.slot_take(name=name, member="gen_1", limit=2, max_age_seconds=900).allowed
    assert ratelimit.slot_take(name=name, member="gen_1", limit=2, max_age_seconds=900).used == 1  # idempotent
    assert ratelimit.slot_take(name=name, member="gen_2", limit=2, max_age_seconds=900).allowed
    assert not ratelimit.slot_take(name=name, member="gen_3", limit=2, max_age_seconds=900).allowed
    ratelimit.slot_release(name=name, member="gen_1")
    ratelimit.slot_release(name=name, member="gen_1")  # a second release is harmless
    assert ratelimit.slot_take(name=name, member="gen_3", limit=2, max_age_seconds=900).allowed
    assert 0 < ratelimit.redis_client().pttl(f"hub:rl:slots:{name}") <= 900_000
