"""Fair turns at the upstreams: the order in which waiting generations get their model's calls.

Start-time fair queuing, one order per model (and generations queue): each generation gets a
virtual start time when it is handed to the broker — its account's last finish tag or the
order's virtual time, whichever is later — and its account's finish tag moves on by n ÷ the
account type's turn weight (billing: AccountTypeLimits.turn_weight). The order is a Redis sorted
set scored by those stamps; the virtual time is the stamp of the last generation taken. So an
account with 10,000 generations waiting holds stamps far ahead, and another account's one
generation is stamped at the virtual time: it is the next taken, whatever was queued before it.
A sync request (a person waiting) is stamped on a lane of its own account's, at the virtual time
too, ahead of that account's async backlog (which pays for its turn: its next stamps move on).

The stamp is one Lua script in Redis, atomic across every web process: the same serialization
per account as the charge's account lock, without a write in the charging statement (the hot
path), and re-made whenever a generation is handed over again (a lost worker, the sweeper).

Late binding (workers.turns): a generation's Celery task, once it holds an upstream slot, takes
the head of this order — which may not be its own — and runs that one. Every generation in the
order has a task of its own in the broker, and a task leaves only after it ran one or found the
order empty, so every generation in the order is taken by some task. One taken by a worker that
died before its claim is no longer in the order but still queued: the sweeper's re-send puts it
back (GENERATION_RESEND_AFTER_SECONDS).

Without Redis (the embedded default, one worker process) there is no order: each task runs its
own generation, as before.
"""

import logging
from dataclasses import dataclass

import redis
from django.conf import settings

from billing.models import AccountType
from billing.selectors import account_type_turn_weight
from generations import completion
from generations.models import Generation, GenerationStatus
from hub.infra import backends
from hub.infra.redis_client import redis_client, redis_script

logger = logging.getLogger(__name__)

PREFIX = "hub:fair:"
# Added to the order: a new stamp; already there and being taken from: nothing to send; already
# there but nothing taken from the order for GENERATION_RESEND_AFTER_SECONDS: send a task again.
ADDED, WAITING, STALLED = 1, 0, 2

# KEYS: order, virtual time, finish tags, last taken[, the task's queue]; ARGV: member, n, account,
# weight, sync, ttl ms, stalled after ms[, the task's message]. Returns {outcome, place (1: next),
# 1 when the task's message was pushed with it}.
_PUSH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local outcome = 1
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local taken = tonumber(redis.call('GET', KEYS[4]))
  if taken and now - taken < tonumber(ARGV[7]) then return {0, redis.call('ZRANK', KEYS[1], ARGV[1]) + 1, 0} end
  outcome = 2
else
  local v = tonumber(redis.call('GET', KEYS[2])) or 0
  local cost = tonumber(ARGV[2]) / tonumber(ARGV[4])
  local own = 'a:' .. ARGV[3]
  local finish = math.max(v, tonumber(redis.call('HGET', KEYS[3], own)) or 0)
  local start = finish
  if ARGV[5] == '1' then
    local lane = 's:' .. ARGV[3]
    start = math.max(v, tonumber(redis.call('HGET', KEYS[3], lane)) or 0)
    redis.call('HSET', KEYS[3], lane, tostring(start + cost))
  end
  redis.call('HSET', KEYS[3], own, tostring(finish + cost))
  redis.call('ZADD', KEYS[1], start, ARGV[1])
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[6])) end
end
local sent = 0
if ARGV[8] then
  redis.call('LPUSH', KEYS[5], ARGV[8])
  sent = 1
end
return {outcome, redis.call('ZRANK', KEYS[1], ARGV[1]) + 1, sent}
"""

# Taking the head as a Lua function, for this module's script and for the worker's, which takes
# an upstream slot and then the head in one round trip (workers.turns): `take_keys_args`.
# The head taken (its member and stamp) and how many web processes watch its generation then:
# subscribers to its start channel, `channels` their prefix. Its start is announced only to
# those (generations.completion.publish_started).
POP_LUA = """
local function fair_pop(order, vtime, taken, ttl, channels)
  local head = redis.call('ZPOPMIN', order)
  if #head == 0 then return false end
  local t = redis.call('TIME')
  local v = tonumber(redis.call('GET', vtime)) or 0
  if tonumber(head[2]) > v then redis.call('SET', vtime, head[2], 'PX', ttl) end
  redis.call('SET', taken, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), 'PX', ttl)
  local watchers = redis.call('PUBSUB', 'NUMSUB', channels .. string.match(head[1], '^(.*):%d+$'))[2]
  return {head[1], head[2], watchers}
end
"""

# KEYS: order, virtual time, last taken; ARGV: ttl ms, the generations' channel prefix
_POP = POP_LUA + "return fair_pop(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2])"


@dataclass(frozen=True)
class Turn:
    """What a generation's stamp is made of."""

    generation_id: str
    model_id: str
    account_id: int
    weight: int
    n: int
    sync: bool


@dataclass(frozen=True)
class Pushed:
    """A generation's stamp: ADDED, WAITING or STALLED, its place in the order (1: the next to be
    taken) and whether the task message given to fair_push went to the broker with it."""

    outcome: int
    position: int
    task_sent: bool


@dataclass(frozen=True)
class Taken:
    """The head of an order, taken: its generation, its images and its stamp (to give it back);
    `watched`: whether a web process watched it then (its start is announced only then)."""

    generation_id: str
    n: int
    stamp: float
    watched: bool


def enabled() -> bool:
    return backends.redis()


def _key(model_id: str, part: str) -> str:
    return f"{PREFIX}{settings.GENERATIONS_QUEUE}:{model_id}:{part}"


def _member(generation_id: str, n: int) -> str:
    return f"{generation_id}:{n}"


def _ttl_ms() -> int:
    return (settings.GENERATION_TIMEOUT_SECONDS + settings.GENERATION_RESEND_AFTER_SECONDS) * 1000


def _script(source: str):
    return redis_script(source)


def turn_of(generation_id: str) -> Turn | None:
    """A queued generation's turn as its row says (a re-send: the sweeper's, a lost worker's)."""
    row = (
        Generation.objects.filter(pk=generation_id, status=GenerationStatus.QUEUED)
        .values_list("model_id", "owner_id", "n", "is_async", "owner__credit_account__account_type")
        .first()
    )
    if row is None:
        return None
    model_id, owner_id, n, is_async, account_type = row
    weight = account_type_turn_weight(account_type=account_type or AccountType.FREE)
    return Turn(generation_id, model_id, owner_id, weight, n, sync=not is_async)


def fair_push(turn: Turn, *, task: tuple[str, str] | None = None) -> Pushed | None:
    """Stamp the generation and add it to its model's order (ADDED); one already there keeps its
    place (WAITING, or STALLED when nothing was taken from the order for a while). None when
    there is no order (no Redis, or Redis unreachable): its task runs it directly.

    `task`, a broker queue on this Redis and a task message (hub.broker.task_message_for_lpush),
    is pushed by the same script when the generation needs a task (ADDED, STALLED): its stamp, its
    task and its place for the request's answer in one round trip — three before (bench
    async-c32: the stamp and the place's ZRANK were ~11 % of the web's samples, py-spy)."""
    if not enabled():
        return None
    keys = [_key(turn.model_id, part) for part in ("order", "vtime", "finish", "taken")]
    member = _member(turn.generation_id, turn.n)
    args = [member, turn.n, turn.account_id, turn.weight, int(turn.sync), _ttl_ms()]
    args.append(settings.GENERATION_RESEND_AFTER_SECONDS * 1000)
    if task is not None:
        keys.append(task[0])
        args.append(task[1])
    try:
        outcome, position, sent = _script(_PUSH)(keys=keys, args=args)
    except (redis.RedisError, OSError) as exc:
        logger.warning("generation %s: not in the fair order, Redis unavailable: %s", turn.generation_id, exc)
        return None
    return Pushed(outcome, position, bool(sent))


def fair_take(model_id: str) -> Taken | None:
    """Take the head of the model's order; None when it is empty."""
    keys, args = take_keys_args(model_id)
    head = _script(_POP)(keys, args + [completion.STARTED_PREFIX])
    return taken_of(head) if head else None


def take_keys_args(model_id: str) -> tuple[list[str], list]:
    """POP_LUA's keys for the model's order (order, virtual time, last taken) and its arguments
    (the ttl ms)."""
    return [_key(model_id, part) for part in ("order", "vtime", "taken")], [_ttl_ms()]


def taken_of(head: list) -> Taken:
    """The head POP_LUA took: its member, its stamp and its generation's watchers."""
    member, stamp, watchers = head
    generation_id, _, n = member.decode().rpartition(":")
    return Taken(generation_id, int(n), float(stamp), watchers > 0)


def fair_give_back(model_id: str, taken: Taken) -> None:
    """Put a taken generation back in its place (its task could not claim it: database down)."""
    redis_client().zadd(_key(model_id, "order"), {_member(taken.generation_id, taken.n): taken.stamp}, nx=True)


def fair_head_images(model_id: str) -> int | None:
    """The images of the generation at the head of the model's order; None when it is empty."""
    head = redis_client().zrange(_key(model_id, "order"), 0, 0)
    return int(head[0].decode().rpartition(":")[2]) if head else None


def fair_remove(*, generation_id: str, model_id: str, n: int) -> None:
    """Take a generation that ended while it waited (canceled, failed) out of its order."""
    if not enabled():
        return
    try:
        redis_client().zrem(_key(model_id, "order"), _member(generation_id, n))
    except (redis.RedisError, OSError) as exc:  # a task that takes it finds it ended and takes the next
        logger.warning("generation %s: could not leave the fair order: %s", generation_id, exc)


def fair_positions(generations) -> dict[str, int]:
    """Each waiting generation's place in its model's order (1: the next to be taken), by id;
    generations not in an order are left out."""
    if not enabled() or not generations:
        return {}
    pipe = redis_client().pipeline(transaction=False)
    for generation in generations:
        pipe.zrank(_key(generation.model_id, "order"), _member(generation.id, generation.n))
    try:
        ranks = pipe.execute()
    except (redis.RedisError, OSError):
        return {}
    return {g.id: rank + 1 for g, rank in zip(generations, ranks, strict=True) if rank is not None}
