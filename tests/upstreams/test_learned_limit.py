"""The learned limit over many calls, in the real Redis: a backlog keeps an unconfigured upstream's
budget full against a provider that refuses (429) any call over its concurrency, as the bench's
learned-limit scenario does, and the budget's scripts (upstreams.budget) are all that decide how
many calls go out. Only the provider and the clock are stand-ins: calls end when the test says."""

import collections
import time

import pytest
from django.conf import settings

from upstreams import budget
from upstreams.state import upstream_state

# Without Redis there is no shared budget to learn a limit in: every call is granted, and a
# backlog would fill for ever.
pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="the budget's scripts run in Redis")

COOLDOWN = 0.02  # the provider's Retry-After, short so a test waits out many


class Backlog:
    """Endless generations for one upstream: every `success()` the oldest call ends well, then
    calls are sent until the budget says no; a call beyond the provider's `limit` is refused at
    once (429: `budget.rate_limited`, its slot released), a cooldown slept out."""

    def __init__(self, target, limit: int):
        self.target, self.limit = target, limit
        self.in_flight: collections.deque = collections.deque()  # accepted by the provider
        self.refused = self.sent = 0
        self.fill()

    def fill(self) -> None:
        while True:
            grant = budget.acquire(self.target, images=1)
            if isinstance(grant, budget.Busy):
                if grant.reason != "cooldown":
                    return
                time.sleep(grant.wait_seconds)
                continue
            self.sent += 1
            if len(self.in_flight) >= self.limit:
                self.refused += 1
                budget.rate_limited(self.target, retry_after=COOLDOWN)
                budget.release(grant, outcome="rate_limited", seconds=0.001)
            else:
                self.in_flight.append(grant)

    def success(self) -> None:
        budget.release(self.in_flight.popleft(), outcome="ok", seconds=0.05)
        self.fill()

    def run(self, successes: int) -> list[int]:
        """The provider's calls in flight after each success."""
        busy = []
        for _ in range(successes):
            self.success()
            busy.append(len(self.in_flight))
        return busy

    @property
    def learned(self) -> float:
        return upstream_state(self.target.upstream_id).learned_limit


def test_an_unconfigured_upstream_starts_at_the_initial_limit_and_doubles_each_window(target):
    backlog = Backlog(target(), limit=1000)
    assert len(backlog.in_flight) == budget.INITIAL_LIMIT == 10  # not the 1,000 a worker could hold
    assert backlog.run(10) == list(range(11, 21))  # one more per success: a window doubles it
    assert backlog.run(20)[-1] == 40
    assert backlog.refused == 0


def test_it_finds_the_providers_limit_and_keeps_the_upstream_busy_with_few_429s(target):
    backlog = Backlog(target(), limit=20)
    warm = backlog.run(20)
    assert backlog.refused == 1 and warm[-1] == 20  # slow start to 21: one 429, the limit back to 20
    busy = backlog.run(2000)  # a hundred windows
    assert sum(busy) / len(busy) >= 0.98 * 20
    assert backlog.refused <= 15  # a probe above the ceiling every ten windows
    assert backlog.refused / backlog.sent <= 0.01


def test_a_429_at_the_limit_costs_a_tenth_of_it_for_two_calls_not_half_for_a_window(target):
    backlog = Backlog(target(), limit=20)
    backlog.run(300)
    refused = backlog.refused
    while backlog.refused == refused:  # up to the next probe
        backlog.success()
    assert backlog.learned >= 18
    assert upstream_state(backlog.target.upstream_id).ceiling == 21  # the calls in flight at the 429
    assert backlog.run(2) == [19, 20]
    assert backlog.run(150) == [20] * 150  # no new probe for ten windows


def test_a_provider_limit_that_falls_is_followed_down_within_a_few_cooldowns(target):
    backlog = Backlog(target(), limit=20)
    backlog.run(300)
    backlog.limit, before = 5, backlog.refused
    backlog.run(200)
    assert backlog.learned < 6
    assert backlog.refused - before <= 25


def test_a_provider_limit_that_grows_is_found_by_the_probes(target):
    backlog = Backlog(target(), limit=20)
    backlog.run(300)
    backlog.limit = 30
    busy = backlog.run(1500)
    assert max(busy[-100:]) == 30 and min(busy[-100:]) >= 27


def test_a_limit_not_used_does_not_grow(target):
    backlog = Backlog(target(), limit=20)
    backlog.run(300)
    for _ in range(15):  # the backlog is gone: calls end and no new ones come
        budget.release(backlog.in_flight.popleft(), outcome="ok", seconds=0.05)
    learned = backlog.learned
    for _ in range(500):  # a trickle: one call at a time
        grant = budget.acquire(backlog.target, images=1)
        budget.release(grant, outcome="ok", seconds=0.05)
    assert backlog.learned == pytest.approx(learned)
