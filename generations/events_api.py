"""`GET /generations/{id}/events`: a generation's progress as server-sent events, for clients
that would otherwise poll — `generation.queued`, `generation.started`, then
`generation.succeeded` | `failed` | `canceled`, and the stream ends.

Each event's data is the generation as GET answers it when the event is sent, and each has
the id of its step (1 queued, 2 started, 3 finished), so a client reconnecting with
`Last-Event-ID` gets the steps after it only. While the generation moves on, an open stream
is a parked greenlet (gunicorn's gevent workers) holding no thread and no database
connection: it is woken by the process's completion listener (generations.completion) when a
worker claims or finishes the generation, re-reads the row then — and at least every
RECHECK_SECONDS, should a notification be lost — and sends a keep-alive comment while idle.
"""

import time
from collections.abc import Iterator

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from generations import completion
from generations.apis import GenerationOutput
from generations.models import FINISHED, Generation
from generations.selectors import generation_get_for_owner_api
from generations.services.wait import connection_release
from hub.http import sse
from hub.http.errors import NotFound
from hub.http.openapi import errors
from hub.http.public_url import base_url
from hub.infra import backends, shutdown

QUEUED_ID, STARTED_ID, FINISHED_ID = 1, 2, 3
# The backstop: an open stream re-reads its row this often even if no notification came.
RECHECK_SECONDS = 30.0


def _steps(generation: Generation) -> list[tuple[int, str]]:
    """The steps the generation has taken, as (event id, event name)."""
    steps = [(QUEUED_ID, "generation.queued")]
    if generation.started_at is not None:
        steps.append((STARTED_ID, "generation.started"))
    if generation.status in FINISHED:
        steps.append((FINISHED_ID, f"generation.{generation.status}"))
    return steps


def generation_events_stream(*, owner, generation_id: str, root: str, after: int = 0) -> Iterator[str]:
    """The events of the owner's generation after the id `after`, as they happen; it ends with
    the generation's final event, or early (the client reconnects with Last-Event-ID) when the
    generation is deleted or this process stops."""
    # Without Redis no message wakes a stream on a start: it re-reads as often as the poller.
    recheck = RECHECK_SECONDS if backends.redis() else settings.WAIT_POLL_INTERVAL_SECONDS
    local = completion.waiters()
    woken = local.watch(generation_id)  # before the read: a step after it wakes us
    sent_at = time.monotonic()
    try:
        while True:
            woken.clear()
            try:
                generation = generation_get_for_owner_api(owner=owner, generation_id=generation_id)
            except NotFound:
                return
            steps = _steps(generation)
            data = GenerationOutput.data(generation, root=root) if steps[-1][0] > after else None
            connection_release()  # nothing held while the stream waits
            for event_id, name in steps:
                if event_id > after:
                    yield sse.frame(name, data, event_id=event_id)
                    after, sent_at = event_id, time.monotonic()
            if generation.status in FINISHED:
                return
            read_at = time.monotonic()
            while not woken.wait(max(min(sent_at + sse.KEEP_ALIVE_SECONDS, read_at + recheck) - time.monotonic(), 0)):
                now = time.monotonic()
                if now - sent_at >= sse.KEEP_ALIVE_SECONDS:
                    yield sse.KEEP_ALIVE
                    sent_at = now
                if now - read_at >= recheck:
                    break
            if shutdown.seconds_left() is not None:  # stopping: the client resumes elsewhere
                return
    finally:
        local.remove(generation_id, woken)


class GenerationEventsApi(APIView):
    content_negotiation_class = sse.IgnoreAccept

    @extend_schema(
        operation_id="generations_events",
        description=(
            "The generation's progress as server-sent events (`text/event-stream`): `generation.queued`, "
            "`generation.started`, then `generation.succeeded`, `generation.failed` or `generation.canceled`, "
            "and the stream ends. Each event's `data` is the generation as GET /generations/{id} returns it; "
            "its `id` (1, 2, 3) resumes the stream with `Last-Event-ID`. A `: keep-alive` comment at least "
            "every 15 s."
        ),
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR,
                description="server-sent events, each with `id`, `event` and `data` (the generation, JSON)",
                examples=[
                    OpenApiExample(
                        "a generation's events",
                        value='id: 1\nevent: generation.queued\ndata: {"object":"image_generation",…}\n\n'
                        ": keep-alive\n\n"
                        'id: 2\nevent: generation.started\ndata: {…,"status":"running",…}\n\n'
                        'id: 3\nevent: generation.succeeded\ndata: {…,"status":"succeeded",…}\n\n',
                        media_type="text/event-stream",
                    )
                ],
            ),
            **errors(401, 404),
        },
        parameters=[
            OpenApiParameter(
                "Last-Event-ID",
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                description="The id of the last event received: the stream resumes after it",
            )
        ],
    )
    def get(self, request: Request, generation_id: str):
        generation_get_for_owner_api(owner=request.user, generation_id=generation_id)  # someone else's: 404
        events = generation_events_stream(
            owner=request.user,
            generation_id=generation_id,
            root=base_url(request),
            after=sse.last_event_id(request.headers.get("Last-Event-ID")),
        )
        return sse.response(events)
