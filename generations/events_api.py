"""`GET /generations/{id}/events`: a generation's progress as server-sent events, for clients
that would otherwise poll — `generation.queued`, `generation.started`, then
`generation.succeeded` | `failed` | `canceled`, and the stream ends.

Each event's data is the generation as GET answers it when the event is sent, and each has
the id of its step (1 queued, 2 started, 3 finished), so a client reconnecting with
`Last-Event-ID` gets the steps after it only. While the generation moves on, an open stream
is a parked greenlet (gunicorn's gevent workers) holding no thread and no database
connection (generations.services.wait.generation_watch): woken when a worker claims or
finishes the generation, it re-reads the row and sends what is new; a keep-alive comment while
idle.

A streamed generation's partial images (`stream: true` with `partial_images`) come between its
started and its finish as `generation.partial_image` events, relayed live (generations.partials):
they have no id — a reconnecting client gets only those still to come — and are not stored.
"""

from collections.abc import Iterator

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.views import APIView

from apikeys.authentication import ApiKeyAuthentication
from generations.apis import GenerationOutput
from generations.models import FINISHED, Generation
from generations.partials import Final, Partial
from generations.selectors import generation_find_for_owner_api, generation_get_for_owner_api
from generations.services.wait import generation_watch
from hub.http import sse
from hub.http.departure import UNWATCHED, Departure, departure_of
from hub.http.openapi import errors
from hub.http.public_url import base_url

QUEUED_ID, STARTED_ID, FINISHED_ID = 1, 2, 3
PARTIAL_EVENT = "generation.partial_image"


def _steps(generation: Generation) -> list[tuple[int, str]]:
    """The steps the generation has taken, as (event id, event name)."""
    steps = [(QUEUED_ID, "generation.queued")]
    if generation.started_at is not None:
        steps.append((STARTED_ID, "generation.started"))
    if generation.status in FINISHED:
        steps.append((FINISHED_ID, f"generation.{generation.status}"))
    return steps


def generation_events_stream(
    *,
    owner,
    generation_id: str,
    root: str,
    after: int = 0,
    with_partials: bool = False,
    departure: Departure = UNWATCHED,
) -> Iterator[str]:
    """The events of the owner's generation after the id `after`, as they happen (generation_watch
    wakes it); it ends with the generation's final event, or early (the client reconnects with
    Last-Event-ID) when the generation is deleted or this process stops, and at once when the
    client hangs up (`departure`). `with_partials`: its partial images too, as they come."""

    def read() -> Generation | None:
        return generation_find_for_owner_api(owner=owner, generation_id=generation_id)

    generation = None  # as last read (the watch reads it first): a partial's event describes it
    watched = generation_watch(generation_id=generation_id, read=read, with_partials=with_partials, departure=departure)
    for item in watched:
        if item is None:
            yield sse.KEEP_ALIVE
            continue
        if isinstance(item, Partial):
            yield sse.frame_with_base64(PARTIAL_EVENT, _partial(generation, item), "b64_json", item.b64_json)
            continue
        if isinstance(item, Final):
            continue  # its image is in the finished generation's URLs
        generation = item
        steps = [(event_id, name) for event_id, name in _steps(generation) if event_id > after]
        if steps:
            data = GenerationOutput.data(generation, root=root)
            yield "".join(sse.frame(name, data, event_id=event_id) for event_id, name in steps)
            after = steps[-1][0]


def _partial(generation: Generation, partial: Partial) -> dict:
    """A `generation.partial_image` event's data but its `b64_json` (`image_index`: which of the n images)."""
    return {
        "generation_id": generation.pk,
        "image_index": partial.image_index,
        "partial_image_index": partial.partial_image_index,
        "size": generation.size,
        "output_format": generation.options.get("output_format", "png"),
        "created_at": partial.created_at,
    }


class GenerationEventsApi(APIView):
    # An API key, or the account pages' session: the playground (/account/playground/) watches
    # its generation with EventSource, which sends the cookies and no Authorization header. A
    # GET changes nothing, so DRF's session check lets it through without a CSRF token; the
    # owner-scoped read below answers another user's generation 404 either way.
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    content_negotiation_class = sse.IgnoreAccept

    @extend_schema(
        operation_id="generations_events",
        description=(
            "The generation's progress as server-sent events (`text/event-stream`): `generation.queued`, "
            "`generation.started`, then `generation.succeeded`, `generation.failed` or `generation.canceled`, "
            "and the stream ends. Each event's `data` is the generation as GET /generations/{id} returns it; "
            "its `id` (1, 2, 3) resumes the stream with `Last-Event-ID`. A streamed generation's partial "
            "images (`stream: true` with `partial_images`) come between as `generation.partial_image` events "
            "without an id, their `data` `{generation_id, image_index, partial_image_index, b64_json, size, "
            "output_format, created_at}`: live only (not stored, not resent on resume; they need the hub's "
            "Redis). A `: keep-alive` comment at least every 15 s."
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
                        'event: generation.partial_image\ndata: {"generation_id":"gen_…","image_index":0,'
                        '"partial_image_index":0,"b64_json":"iVBOR…","size":"1024x1024","output_format":"png",'
                        '"created_at":1767225600}\n\n'
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
        generation = generation_get_for_owner_api(owner=request.user, generation_id=generation_id)  # else 404
        events = generation_events_stream(
            owner=request.user,
            generation_id=generation_id,
            root=base_url(request),
            after=sse.last_event_id(request.headers.get("Last-Event-ID")),
            with_partials=generation.partial_images is not None,
            departure=departure_of(request),
        )
        return sse.response(events)
