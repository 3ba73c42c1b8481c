"""A generation's provider call, through its model's upstreams.

Each attempt first takes a slot of an upstream's shared budget (upstreams.routing: by priority,
then weight, skipping open circuits and full budgets), sends one call, and gives the slot back.
Over every upstream's budget the generation waits — it is neither sent nor failed — until a slot
frees (woken by its release: upstreams.freed) or its deadline comes. What a failed call means:

- refused (`provider_rejected`, a 4xx such as the content policy): the generation fails; the
  same request would be refused anywhere, so it is not tried elsewhere.
- 429: the upstream cools down for every worker (Retry-After) and its learned limit shrinks
  (upstreams.budget); the call is tried again (elsewhere if another upstream has room) and this
  does not count as a failed attempt: a rate limit never fails a generation while its deadline
  allows.
- 5xx, timeouts, connection errors: a failure of the upstream (its circuit counts it), tried
  again right away on another upstream when one is usable, else on the same after a backoff.
- anything else not permanent (bad credentials, a malformed answer): tried again on another
  upstream only.

At most MAX_FAILED_CALLS failed calls, all within the generation's deadline; the generation is
charged once whatever happens here (its charge was taken at submit). A generation that stops
being the attempt's while it waits (canceled, deleted, taken over: `abandoned`) stops waiting
and is not sent. Every call, whatever its end, is recorded (upstreams.UpstreamCall: upstream,
latency, outcome, the provider's usage and its cost by the upstream's prices): where it ends when
the attempt goes on, else — its last call — by the attempt's finish (`unrecorded`).

A model with no enabled upstream is served by its backend (or IMAGE_PROVIDER): `local` is
called directly (no budget), anything else is the default upstream of the environment.
"""

import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from django.db import DatabaseError, connection
from django.utils import timezone

from generations.models import ImageModel
from generations.services import Row
from hub.compiled import insert_when
from hub.infra import backends
from upstreams import budget, circuit, freed
from upstreams import metrics as upstream_metrics
from upstreams.models import UpstreamCall
from upstreams.routing import Choice, Wait, call_ended, choose
from upstreams.services import upstream_call_record, upstream_call_row
from upstreams.targets import Target, default_target, upstream_targets
from workers.providers import (
    LOCAL,
    Generated,
    ProviderError,
    ProviderRequest,
    backend_name,
    provider_for,
    upstream_adapter,
)

logger = logging.getLogger(__name__)

MAX_FAILED_CALLS = 5  # as many as the OpenAI adapter's own attempts were (4 retries)
BACKOFF_BASE_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
UPSTREAM_FAULTS = frozenset({"timeout", "unavailable"})  # worth trying on the same upstream again
MSG_TIMED_OUT = "Image provider timed out"
MSG_UNAVAILABLE = "Image provider is temporarily unavailable"


class AttemptAbandoned(Exception):
    """The generation stopped being this attempt's before its call was sent."""


def targets_of(model: ImageModel) -> list[Target]:
    """The model's upstreams, or the default upstream of the environment; none for the `local`
    backend (called directly, no budget). An unknown backend is refused (ProviderError)."""
    targets = upstream_targets(model)
    if targets:
        return targets
    backend = backend_name(model.backend)
    if backend == LOCAL:
        return []
    provider_for(backend)  # an unknown backend is refused here, as before upstreams
    return [default_target(backend)]


def generate(
    model: ImageModel,
    request: ProviderRequest,
    *,
    generation_id: str,
    abandoned: Callable[[], bool],
    unrecorded: list[UpstreamCall],
    held: Choice | None = None,
) -> Generated:
    """The model's images for `request` (generation `generation_id`'s) and the usage its provider
    reported, or ProviderError
    (AttemptAbandoned when `abandoned()` turns true before a call is sent). `held`: a slot its
    task took before it took this generation (workers.turns), used for the first call.
    `unrecorded` receives the record of the call that ended the attempt, for the caller to write
    with its finish (as_rows), or on its own (records_write) if it has none to write."""
    targets = targets_of(model)
    if not targets:
        return provider_for(LOCAL).generate(request)
    # Back to the pool: reading the routes (every CATALOG_CACHE_SECONDS) took a connection, and
    # the call may wait long for a slot (bench learned-limit ran the worker's pool dry).
    connection.close()
    return _Call(
        targets, request, abandoned, held=held, generation_id=generation_id, model_id=model.id, unrecorded=unrecorded
    ).run()


def as_rows(unrecorded: list[UpstreamCall]) -> list[Row]:
    """The records as rows of a finish's statement (generation_finalize's `rows`)."""
    return [functools.partial(insert_when, record) for record in unrecorded]


def records_write(unrecorded: list[UpstreamCall]) -> None:
    """Write the records on their own (their attempt has no finish to write them with), and
    forget them. A database that cannot take one costs the generation nothing: its images (or
    its next try) matter more than its cost row."""
    try:
        for record in unrecorded:
            try:
                upstream_call_record(call=record)
            except DatabaseError as exc:
                name, generation_id = record.upstream_name, record.generation_id
                logger.warning("upstream %s: the call of %s was not recorded: %s", name, generation_id, exc)
    finally:
        unrecorded.clear()
        # Back to the pool: what follows waits (a retry's backoff or budget, the finishing
        # turn) and a waiting greenlet holds no connection (hub/settings/base.py DATABASES).
        connection.close()


def adapters_make(targets: list[Target]) -> None:
    """Make (once per process) the adapters of `targets` before a slot is held for a call to
    them: a first adapter takes a while of CPU, during which the process renews no lease."""
    for target in targets:
        try:
            upstream_adapter(target)
        except ProviderError:
            pass  # said again, and handled, when a call is sent there


def slot_take(
    targets: list[Target], *, images: int, deadline: float, keep_waiting: Callable[[], bool] | None = None
) -> Choice | Wait | None:
    """A slot of one of `targets` (choose's order), waiting while every one is busy: the Choice;
    None when every upstream is open; the last Wait when `deadline` (monotonic) came or
    `keep_waiting` said to stop. A busy upstream's waiter is woken when one of its slots frees
    (upstreams.freed); a cooldown or a full minute is slept out (in steps, so `keep_waiting` is
    asked again at least every RECHECK_SECONDS)."""
    waited_since = None
    try:
        while True:
            with freed.slot_waiter(target.upstream_id for target in targets) as waiter:
                choice = choose(targets, images=images)
                if not isinstance(choice, Wait):
                    return choice
                left = deadline - time.monotonic()
                if left <= 0 or (keep_waiting is not None and not keep_waiting()):
                    return choice
                waited_since = waited_since or time.monotonic()
                seconds = min(left, freed.RECHECK_SECONDS)
                if choice.seconds > 0 or waiter is None:  # known: a cooldown or the minute
                    time.sleep(min(seconds, choice.seconds + random.uniform(0, 0.1)))
                else:
                    waiter.wait(seconds)
    finally:
        if waited_since is not None:
            upstream_metrics.BUDGET_WAIT.observe(time.monotonic() - waited_since)


def slot_give_back(choice: Choice) -> None:
    """Give back a slot taken for a call that was not sent (and its probe, if it was one)."""
    budget.release(choice.grant, outcome="unused", seconds=0)
    if choice.probe is not None:
        circuit.probe_give_back(choice.target, token=choice.probe)


class _Call:
    def __init__(
        self,
        targets: list[Target],
        request: ProviderRequest,
        abandoned: Callable[[], bool],
        *,
        held: Choice | None,
        generation_id: str,
        model_id: str,
        unrecorded: list[UpstreamCall],
    ):
        self.unrecorded = unrecorded
        self.targets = targets
        self.request = request
        self.generation_id = generation_id
        self.model_id = model_id
        self.abandoned = abandoned
        self.held = held
        self.failures = 0
        self.last_error: ProviderError | None = None

    def run(self) -> Generated:
        adapters_make(self.targets)
        while True:
            choice, self.held = self.held, None
            if choice is None:
                if self.request.deadline - time.monotonic() <= 0:
                    raise self._out_of_time()
                if self.abandoned():
                    raise AttemptAbandoned
                choice = slot_take(
                    self.targets,
                    images=self.request.n,
                    deadline=self.request.deadline,
                    keep_waiting=lambda: not self.abandoned(),
                )
            if isinstance(choice, Wait):  # the deadline came, or the generation is no longer ours
                if self.abandoned():
                    raise AttemptAbandoned
                raise self._out_of_time()
            if choice is None:
                raise self.last_error or ProviderError(
                    MSG_UNAVAILABLE,
                    permanent=False,
                    detail="every upstream of the model is open (circuit breaker) or was given up on",
                    kind="unavailable",
                )
            generated = self._send(choice)
            if generated is not None:
                return generated

    def _send(self, choice: Choice) -> Generated | None:
        """One call on the chosen upstream: its answer, or None to try again (ProviderError to stop)."""
        target = choice.target
        started = time.monotonic()
        try:
            generated = upstream_adapter(target).generate(
                replace(self.request, model=target.upstream_model or self.request.model)
            )
        except ProviderError as exc:
            seconds = time.monotonic() - started
            record = self._record(target, "rejected" if exc.permanent else exc.kind, seconds)
            try:
                delay = self._failed(choice, exc, seconds)
            except ProviderError:
                self.unrecorded.append(record)  # the attempt's last call: written with its finish
                raise
            records_write([record])  # tried again: written now, before any wait
            if delay:
                time.sleep(delay)
            return None
        seconds = time.monotonic() - started
        self.unrecorded.append(self._record(target, "ok", seconds, generated))
        call_ended(choice, outcome="ok", seconds=seconds, upstream_ok=True)
        upstream_metrics.CALLS.labels(target.name, "ok").inc()
        upstream_metrics.CALL_LATENCY.labels(target.name).observe(seconds)
        return generated

    def _failed(self, choice: Choice, exc: ProviderError, seconds: float) -> float:
        """What a failed call means (the module's docstring): ProviderError to stop, else the
        seconds to wait before the next try (0: at once)."""
        target = choice.target
        if exc.permanent:
            budget.release(choice.grant, outcome="rejected", seconds=seconds)
            upstream_metrics.CALLS.labels(target.name, "rejected").inc()
            raise exc
        if exc.kind == "rate_limited":
            budget.rate_limited(target, retry_after=exc.retry_after)  # before the release: its slot counts
            budget.release(choice.grant, outcome="rate_limited", seconds=seconds)
            upstream_metrics.CALLS.labels(target.name, "rate_limited").inc()
            self.last_error = exc
            if not backends.redis():  # no shared cooldown to wait out: this call waits on its own
                return min(exc.retry_after or 1.0, max(0.0, self.request.deadline - time.monotonic()))
            return 0
        call_ended(choice, outcome="failed", seconds=seconds, upstream_ok=False)
        upstream_metrics.CALLS.labels(target.name, "failed").inc()
        self.failures += 1
        self.last_error = exc
        logger.warning(
            "upstream %s: call failed (%s, %d of %d): %s",
            target.name,
            exc.kind,
            self.failures,
            MAX_FAILED_CALLS,
            exc.detail,
        )
        if self.failures >= MAX_FAILED_CALLS:
            raise exc
        if exc.kind not in UPSTREAM_FAULTS:
            self.targets = [other for other in self.targets if other.upstream_id != target.upstream_id]
            return 0  # tried elsewhere at once, if there is an elsewhere
        others = [other for other in self.targets if other.upstream_id != target.upstream_id]
        if any(state.state != circuit.OPEN for state in circuit.circuit_states(others)):
            return 0
        delay = exc.retry_after if exc.retry_after is not None else self._backoff()
        if time.monotonic() + delay >= self.request.deadline:
            raise exc
        return delay

    def _record(self, target: Target, outcome: str, seconds: float, generated: Generated | None = None) -> UpstreamCall:
        """The call's record (upstreams.UpstreamCall), not yet written."""
        return upstream_call_row(
            generation_id=self.generation_id,
            model_id=self.model_id,
            target=target,
            started_at=timezone.now() - timedelta(seconds=seconds),
            latency_ms=round(seconds * 1000),
            outcome=outcome,
            quality=self.request.quality,
            size=self.request.size,
            images=len(generated.images) if generated else 0,
            usage=generated.usage if generated else None,
        )

    def _backoff(self) -> float:
        return min(MAX_BACKOFF_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (self.failures - 1)) * random.uniform(0.5, 1.0)

    def _out_of_time(self) -> ProviderError:
        last = self.last_error
        detail = f"deadline passed after {self.failures} failed call(s)"
        if last is not None:
            detail += f"; last: {last.detail}"
        if last is not None and last.kind == "rate_limited":
            return ProviderError(last.user_message, permanent=False, detail=detail, kind="rate_limited")
        return ProviderError(MSG_TIMED_OUT, permanent=False, detail=detail, kind="timeout")
