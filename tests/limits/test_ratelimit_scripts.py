"""The Redis scripts themselves: the sliding minute counts costs and gives them back; a slot
is taken once per member and frees on release."""

import uuid

import pytest
from django.conf import settings

from apikeys import ratelimit

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


def test_a_finish_frees_its_slot_and_wakes_its_waiter_in_one_round_trip(monkeypatch):
    """slot_release_and_announce, after the commit that finished a generation: the slot is free and
    the waiter's message published, both sent as one pipeline."""
    from generations import completion
    from generations.limits import slot_release_and_announce

    name, generation_id = f"test-{uuid.uuid4().hex}", f"gen_{uuid.uuid4().hex[:24]}"
    assert ratelimit.slot_take(name=name, member=generation_id, limit=1, max_age_seconds=900).allowed
    pubsub = ratelimit.redis_client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(completion.CHANNEL_PREFIX + generation_id)
    sent = []
    execute = type(ratelimit.redis_client().pipeline()).execute
    monkeypatch.setattr(
        type(ratelimit.redis_client().pipeline()), "execute", lambda pipe: sent.append(len(pipe)) or execute(pipe)
    )
    try:
        pubsub.get_message(timeout=1)  # the subscription's confirmation
        slot_release_and_announce(api_key_id=name, generation_id=generation_id)
        assert sent == [2]
        assert pubsub.get_message(timeout=2)["data"] == b"done"
        assert ratelimit.slot_take(name=name, member="gen_other", limit=1, max_age_seconds=900).allowed
    finally:
        pubsub.close()


def test_a_finish_announced_while_redis_is_down_is_logged_not_raised(monkeypatch, caplog):
    """The generation is already finished and committed: a Redis fault here must not fail the task
    (the sweeper frees the slot, the waiter re-reads its row)."""
    import redis

    from generations import limits
    from generations.limits import slot_release_and_announce

    monkeypatch.setattr(limits, "redis_client", lambda: redis.Redis(port=1, socket_connect_timeout=1))
    slot_release_and_announce(api_key_id="key_down", generation_id="gen_down")
    assert "gen_down: could not release its slot or announce its finish" in caplog.text
