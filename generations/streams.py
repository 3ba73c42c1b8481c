"""`stream: true` on /images/generations and /images/edits: OpenAI's image stream, as server-sent
events the official SDK iterates (`client.images.generate(..., stream=True)`).

The request is checked and charged as any (its refusals keep their HTTP status), queued as an
async one, and answered with a `text/event-stream` that waits for the generation
(generations.services.wait.generation_watch: no thread, no database connection), a keep-alive
comment every 10 s so that no proxy cuts it, and ends with one `image_generation.completed`
(edits: `image_edit.completed`) per image, its bytes read from storage — or, for a generation
that failed or was canceled after its charge (and was refunded), one `error` event with the
contract's envelope, which the SDK raises as an APIError. Partial images are not relayed yet:
`partial_images` is accepted and none are sent (OpenAI's own stream may send fewer than asked).
"""

import time
from collections.abc import Iterator

import pybase64
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse

from generations.models import Generation, GenerationStatus
from generations.selectors import generation_get_for_owner_api, images_of
from generations.services.wait import generation_watch
from hub.http import sse
from hub.http.departure import UNWATCHED, Departure
from hub.http.errors import GenerationCanceled, GenerationFailed, NotFound
from hub.http.exception_handler import error_body
from hub.infra import storage

# The event's `usage` when the provider reported none: the SDK's event type requires one.
NO_USAGE = {
    "input_tokens": 0,
    "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
    "output_tokens": 0,
    "total_tokens": 0,
}


def image_stream(*, owner, generation_id: str, kind: str, departure: Departure = UNWATCHED) -> Iterator[str]:
    """The stream's events for the owner's charged generation; `kind` names them
    (image_generation, image_edit). It ends at once when the client hangs up (`departure`)."""

    def read() -> Generation | None:
        try:
            return generation_get_for_owner_api(owner=owner, generation_id=generation_id)
        except NotFound:
            return None

    for row in generation_watch(generation_id=generation_id, read=read, departure=departure):
        if row is None:
            yield sse.KEEP_ALIVE
        elif row.status == GenerationStatus.SUCCEEDED:
            for image in images_of(row):
                yield sse.frame(f"{kind}.completed", _completed(row, kind, storage.object_read(image.storage_key)))
        elif row.status == GenerationStatus.FAILED:
            yield _error(GenerationFailed(row.error_message or None, generation_id=row.pk))
        elif row.status == GenerationStatus.CANCELED:
            yield _error(GenerationCanceled(generation_id=row.pk))


def _completed(generation: Generation, kind: str, data: bytes) -> dict:
    """OpenAI's `*.completed` event. Its `usage` holds the tokens the provider reported for the
    call that made the images (each image's event the call's; 0 when it reported none, as the
    local provider), and the credits charged beside them."""
    return {
        "type": f"{kind}.completed",
        "b64_json": pybase64.b64encode(data).decode(),
        "created_at": int(time.time()),
        "size": generation.size,
        "quality": generation.quality,  # OpenAI's (the contract's `quality` is the tier)
        "background": generation.options.get("background", "auto"),
        "output_format": generation.options.get("output_format", "png"),
        "usage": {**(generation.provider_usage or NO_USAGE), "credits": generation.credits_consumed},
    }


def _error(exc: GenerationFailed | GenerationCanceled) -> str:
    body = error_body(exc.code, exc.message, status=exc.status, generation_id=exc.generation_id)
    return sse.frame("error", {"type": "error", **body})


# The OpenAPI answer to `stream: true` (drf-spectacular).
STREAM = OpenApiResponse(
    OpenApiTypes.STR,
    description="with `stream: true`: server-sent events — `image_generation.completed` (edits: "
    "`image_edit.completed`) per image with `b64_json`, `size`, `quality`, `background`, `output_format`, "
    "`created_at`, `usage`; or one `error` event (refunded); `: keep-alive` comments meanwhile",
)
