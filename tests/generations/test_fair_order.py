"""The fair order's stamps (generations.fair) on the real Redis: accounts take turns by weight,
a sync request goes ahead of its own account's async ones, a generation handed over again keeps
its place, and one that ends while it waits leaves the order."""

import uuid

import pytest

from generations import fair
from hub.infra.redis_client import redis_client


@pytest.fixture
def order(settings):
    if not settings.REDIS_URL:
        pytest.skip("the fair order lives in Redis")
    settings.GENERATIONS_QUEUE = f"fair-{uuid.uuid4().hex[:8]}"
    return "gpt-image-1"


def push(model: str, account: int, count: int, *, weight: int = 1, sync: bool = False, n: int = 1) -> list[str]:
    ids = [f"gen_{account}_{'s' if sync else 'a'}_{uuid.uuid4().hex[:6]}" for _ in range(count)]
    for generation_id in ids:
        assert fair.fair_push(fair.Turn(generation_id, model, account, weight, n, sync)).outcome == fair.ADDED
    return ids


def taken_accounts(model: str) -> list[str]:
    taken = []
    while (head := fair.fair_take(model)) is not None:
        taken.append(head.generation_id.split("_")[1] + head.generation_id.split("_")[2])
    return taken


def test_a_late_account_goes_ahead_of_a_backlog(order):
    push(order, 1, 50)
    push(order, 2, 2)
    assert taken_accounts(order)[:4] == ["1a", "2a", "1a", "2a"]


def test_accounts_take_turns_by_weight(order):
    push(order, 1, 6, weight=1)
    push(order, 2, 6, weight=2)
    first = taken_accounts(order)[:6]
    assert first.count("2a") == 4 and first.count("1a") == 2


def test_images_count_toward_the_turn(order):
    push(order, 1, 3, n=4)
    push(order, 2, 8, n=1)
    first = taken_accounts(order)[:5]
    assert first.count("1a") == 1  # one generation of 4 images ≈ four of one


def test_a_sync_request_goes_ahead_of_its_own_accounts_async_ones(order):
    push(order, 1, 20)
    fair.fair_take(order)  # the virtual time moves to the first one taken
    push(order, 1, 1, sync=True)
    assert taken_accounts(order)[0] == "1s"


def test_a_generation_handed_over_again_keeps_its_place(order):
    first, second = push(order, 1, 2)
    fair.fair_take(order)
    turn = fair.Turn(second, order, 1, 1, 1, False)
    push(order, 1, 3)  # stamped after it
    assert fair.fair_push(turn) == fair.Pushed(fair.WAITING, 1, False)  # being taken from: no second task, no new stamp
    assert fair.fair_take(order).generation_id == second


def test_a_stalled_order_asks_for_a_task_again(order, settings):
    (only,) = push(order, 1, 1)
    assert fair.fair_push(fair.Turn(only, order, 1, 1, 1, False)).outcome == fair.STALLED  # never taken from


def test_the_task_goes_with_the_stamp_when_the_generation_needs_one(order, settings):
    """fair_push's `task`: pushed by the stamp's own script for a generation added (or stalled),
    not for one whose order is being taken from; its place comes back with it."""
    queue = f"{settings.GENERATIONS_QUEUE}-tasks"
    first, second = push(order, 1, 2)
    added = f"gen_1_a_{uuid.uuid4().hex[:6]}"
    assert fair.fair_push(fair.Turn(added, order, 1, 1, 1, False), task=(queue, "its task")) == fair.Pushed(
        fair.ADDED, 3, True
    )
    fair.fair_take(order)
    again = fair.Turn(second, order, 1, 1, 1, False)
    assert fair.fair_push(again, task=(queue, "a second task")) == fair.Pushed(fair.WAITING, 1, False)
    assert redis_client().lrange(queue, 0, -1) == [b"its task"]
    redis_client().delete(queue)


def test_a_generation_that_ended_leaves_the_order(order):
    kept, ended = push(order, 1, 2)
    assert set(fair.fair_positions([_row(kept, order), _row(ended, order)])) == {kept, ended}
    fair.fair_remove(generation_id=ended, model_id=order, n=1)
    assert fair.fair_positions([_row(kept, order), _row(ended, order)]) == {kept: 1}


def _row(generation_id: str, model_id: str):
    from generations.models import Generation

    return Generation(id=generation_id, model_id=model_id, n=1)
