"""`stream: true` on /images/generations and /images/edits: OpenAI's image stream, as server-sent
events the official SDK iterates (`client.images.generate(..., stream=True)`).

The request is checked and charged as any (its refusals keep their HTTP status), queued as an
async one, and answered with a `text/event-stream` that waits for the generation
(generations.services.wait.generation_watch: no thread, no database connection), a keep-alive
comment every 10 s so that no proxy cuts it, and ends with one `image_generation.completed`
(edits: `image_edit.completed`) per image, its bytes read from storage — or, for a generation
that failed or was canceled after its charge (and was refunded), one `error` event with the
contract's envelope, which the SDK raises as an APIError.

For a streamed generation the worker also relays the final images as it stores them, which spares
the stream reading them back from storage (it does, for one not heard).

With `partial_images` (1–3) the worker asks its provider for them and relays each as it comes
(generations.partials, over Redis): an `image_generation.partial_image` (edits:
`image_edit.partial_image`) event, before the completed ones. They are live only — not stored,
none sent without Redis, one sent while the client is away is lost — and, as OpenAI's own
stream, it may send fewer than asked (the local provider and OpenAI send them all).
"""

import time
from collections.abc import Iterator

import pybase64
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse

from generations.models import Generation, GenerationStatus
from generations.partials import Final, Partial
from generations.selectors import generation_find_for_owner_api, images_of
from generations.services.wait import generation_watch
from hub.http import sse
from hub.http.departure import UNWATCHED, Departure
from hub.http.errors import GenerationCanceled, GenerationFailed
from hub.http.exception_handler import error_body
from hub.infra import storage

# The event's `usage` when the provider reported none: the SDK's event type requires one.
NO_USAGE = {
    "input_tokens": 0,
    "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
    "output_tokens": 0,
    "total_tokens": 0,
}


def image_stream(
    *,
    owner,
    generation: Generation,
    enqueued_after: float | None,
    kind: str,
    with_partials: bool = False,
    departure: Departure = UNWATCHED,
) -> Iterator[str]:
    """The stream's events for the owner's charged generation (as its request created or found
    it; `enqueued_after`: SubmitOutcome's); `kind` names them (image_generation, image_edit).
    `with_partials`: it asked for partial images. It ends at once when the client hangs up
    (`departure`)."""
    generation_id = generation.pk

    def read() -> Generation | None:
        return generation_find_for_owner_api(owner=owner, generation_id=generation_id)

    finals: dict[int, str] = {}  # the final images relayed by the worker, base64 by index
    watched = generation_watch(
        generation_id=generation_id,
        read=read,
        with_partials=with_partials,
        on_start=False,
        departure=departure,
        created=generation,
        enqueued_after=enqueued_after,
    )
    for item in watched:
        if item is None:
            yield sse.KEEP_ALIVE
        elif isinstance(item, Partial):
            yield sse.frame_with_base64(
                f"{kind}.partial_image", _partial(generation, kind, item), "b64_json", item.b64_json
            )
        elif isinstance(item, Final):
            finals[item.index] = item.b64_json
        else:
            generation = item  # as last read: a partial's event describes it
            yield from _finished(generation, kind, finals)


def _finished(row: Generation, kind: str, finals: dict[int, str]) -> Iterator[str]:
    """A finished generation's last events (none while it is not); each image as relayed, or
    read from storage."""
    if row.status == GenerationStatus.SUCCEEDED:
        for index, image in enumerate(images_of(row)):  # by index, from 0 (workers.runner stores them so)
            b64 = finals.get(index) or pybase64.b64encode(storage.object_read(image.storage_key)).decode()
            yield sse.frame_with_base64(f"{kind}.completed", _completed(row, kind), "b64_json", b64)
    elif row.status == GenerationStatus.FAILED:
        yield _error(GenerationFailed(row.error_message or None, generation_id=row.pk))
    elif row.status == GenerationStatus.CANCELED:
        yield _error(GenerationCanceled(generation_id=row.pk))


def _partial(generation: Generation, kind: str, partial: Partial) -> dict:
    """OpenAI's `*.partial_image` event but its `b64_json` (it has no image index: with n > 1,
    each image's come in turn)."""
    return {
        "type": f"{kind}.partial_image",
        "partial_image_index": partial.partial_image_index,
        "created_at": partial.created_at,
        **_shape(generation),
    }


def _shape(generation: Generation) -> dict:
    return {
        "size": generation.size,
        "quality": generation.quality,  # OpenAI's (the contract's `quality` is the tier)
        "background": generation.options.get("background", "auto"),
        "output_format": generation.options.get("output_format", "png"),
    }


def _completed(generation: Generation, kind: str) -> dict:
    """OpenAI's `*.completed` event but its `b64_json`. Its `usage` holds the tokens the provider reported for the
    call that made the images (each image's event the call's; 0 when it reported none, as the
    local provider), and the credits charged beside them."""
    return {
        "type": f"{kind}.completed",
        "created_at": int(time.time()),
        **_shape(generation),
        "usage": {**(generation.provider_usage or NO_USAGE), "credits": generation.credits_consumed},
    }


def _error(exc: GenerationFailed | GenerationCanceled) -> str:
    body = error_body(exc.code, exc.message, status=exc.status, generation_id=exc.generation_id)
    return sse.frame("error", {"type": "error", **body})


# The OpenAPI answer to `stream: true` (drf-spectacular).
STREAM = OpenApiResponse(
    OpenApiTypes.STR,
    description="with `stream: true`: server-sent events — with `partial_images` (1–3), "
    "`image_generation.partial_image` (edits: `image_edit.partial_image`) events as the provider makes them, "
    "with `b64_json`, `partial_image_index`, `size`, `quality`, `background`, `output_format`, `created_at` "
    "(live only: not stored, not resent; needs the hub's Redis); then `image_generation.completed` (edits: "
    "`image_edit.completed`) per image with `b64_json`, `size`, `quality`, `background`, `output_format`, "
    "`created_at`, `usage`; or one `error` event (refunded); `: keep-alive` comments meanwhile",
)
