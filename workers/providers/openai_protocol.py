"""What both of the adapter's paths to the OpenAI images API share (the SDK's, and the plain POST
of openai_post): the request's body fields, the reading of a streamed answer, and the
classification of the provider's failures — the message the user sees, whether a retry may
help, and the metric's kind of each."""

import collections
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from .base import PartialImage, ProviderRequest

RETRYABLE_4XX = frozenset({408, 409, 429})
MAX_USER_MESSAGE = 500

MSG_TIMED_OUT = "Image provider timed out"
MSG_UNAVAILABLE = "Image provider is temporarily unavailable"
MSG_RATE_LIMITED = "Image provider is busy, please try again later"
MSG_AUTH = "Image provider authentication failed"
MSG_NOT_CONFIGURED = "Image provider is not configured"
MSG_FAILED = "Image provider request failed"
MSG_MALFORMED = "Provider returned a malformed response"
MSG_DOWNLOAD = "Could not download the generated image"
# The provider-errors metric's kind of each failure (ProviderError.kind); a permanent refusal is
# "rejected", whatever its message.
KINDS = {
    MSG_TIMED_OUT: "timeout",
    MSG_UNAVAILABLE: "unavailable",
    MSG_RATE_LIMITED: "rate_limited",
    MSG_AUTH: "auth",
    MSG_NOT_CONFIGURED: "not_configured",
    MSG_MALFORMED: "malformed",
    MSG_DOWNLOAD: "download",
}


@dataclass(frozen=True)
class Failure:
    message: str  # for the user
    detail: str  # for operators
    retryable: bool = False
    permanent: bool = False
    retry_after: float | None = None


def request_fields(request: ProviderRequest) -> dict:
    """The request's body fields, for either path: its options (background, output_format, …)
    among them, as asked. No response_format: gpt-image models reject it and always answer with
    b64_json."""
    fields = dict(model=request.model, prompt=request.prompt, size=request.size, quality=request.quality, n=request.n)
    if request.partial_images:
        fields.update(stream=True, partial_images=request.partial_images)
    return {**fields, **request.options}


class ImageStream:
    """A streamed answer read event by event (`*.partial_image`, `*.completed`, `error`), as
    either path parses them: each partial handed to the request's `on_partial` at once, the
    completed images kept for `body()`. OpenAI's partial events carry no image index: the k-th
    partial with a given `partial_image_index` is taken for image k (whether the provider sends
    an image's partials together or each round's together)."""

    def __init__(self, request: ProviderRequest):
        self._request = request
        self._items: list[dict] = []
        self._usage: object = None
        self._seen: collections.Counter[int] = collections.Counter()

    def event(self, data: object) -> Failure | None:
        """Take one event's data (a JSON object); a Failure when it says the call failed or the
        deadline has passed."""
        if time.monotonic() > self._request.deadline:
            return Failure(MSG_TIMED_OUT, "the stream ran past the deadline", retryable=True)
        if not isinstance(data, dict):
            return Failure(MSG_MALFORMED, f"a stream event's data is not an object ({type(data).__name__})")
        kind = data.get("type")
        if kind == "error" or data.get("error"):
            return stream_failure(data.get("error", data))
        if not isinstance(kind, str):
            return None  # not an event of the images API's: ignored
        if kind.endswith(".partial_image"):
            index, b64 = data.get("partial_image_index"), data.get("b64_json")
            if isinstance(index, int) and isinstance(b64, str) and self._request.on_partial is not None:
                self._request.on_partial(PartialImage(self._seen[index], index, b64))
                self._seen[index] += 1
        elif kind.endswith(".completed"):
            self._items.append({"b64_json": data.get("b64_json")})
            self._usage = data.get("usage", self._usage)  # each event's is the call's
        return None

    def body(self) -> dict | Failure:
        """The answer as a non-streamed call's JSON body; a Failure when no image completed."""
        if not self._items:
            return Failure(MSG_UNAVAILABLE, "the stream ended without a completed image", retryable=True)
        return {"data": self._items, "usage": self._usage}


def sse_data(chunks: Iterable[bytes]) -> Iterator[bytes | bytearray]:
    """The `data` of each server-sent event in a byte stream (the events' names are not needed:
    their data says its type). A bytearray: a partial image's event is a megabyte in many chunks.

    Read line by line, each line's end found by a one-byte search (memchr): a search for a blank
    line (b"\\n\\n", b"\\r\\n\\r\\n") is ~500 times slower per byte, and over a partial image's
    ~90 KB the two took ~1 ms of the worker's CPU per event (bench stream-c16-2s). Each data line
    is copied once."""
    buffer = bytearray()
    line = 0  # where the current line starts
    data: list[bytearray] = []  # the current event's data lines
    for chunk in chunks:
        buffer += chunk
        while (stop := buffer.find(b"\n", line)) >= 0:
            end = stop - 1 if stop > line and buffer[stop - 1] == 13 else stop  # without its \r
            if end == line:  # a blank line ends the event
                if data:
                    yield data[0] if len(data) == 1 else b"\n".join(data)
                    data = []
                del buffer[: stop + 1]
                line = 0
                continue
            if buffer.startswith(b"data:", line):
                data.append(buffer[line + 5 + (buffer[line + 5 : line + 6] == b" ") : end])
            line = stop + 1


def stream_failure(error: object) -> Failure:
    """An `error` event in a stream: the call failed after its answer began (no status to
    classify by); not retried on the same upstream."""
    detail = f"stream error type={_error_field(error, 'type')} code={_error_field(error, 'code')}"
    return Failure(MSG_FAILED, f"{detail} message={_error_field(error, 'message')!r}")


def status_failure(status: int, body: object, headers: Mapping[str, str]) -> Failure:
    """An HTTP error status, classified; `body` is the error object (the SDK's `APIStatusError.body`,
    i.e. a JSON body's "error" field when it has one)."""
    where = f"HTTP {status} type={_error_field(body, 'type')} code={_error_field(body, 'code')} "
    where += f"request_id={headers.get('x-request-id')}"
    if status in (401, 403):
        # Our credentials or account, not the user's request. The message may quote the key.
        return Failure(MSG_AUTH, where)
    message = _error_field(body, "message")
    detail = f"{where} message={message!r}"
    if status == 429:
        return Failure(MSG_RATE_LIMITED, detail, retryable=True, retry_after=_retry_after(headers))
    if status in RETRYABLE_4XX or status >= 500:
        return Failure(MSG_UNAVAILABLE, detail, retryable=True, retry_after=_retry_after(headers))
    if status in (400, 422):
        user = f"Provider rejected the request: {message}" if message else "Provider rejected the request"
        if len(user) > MAX_USER_MESSAGE:
            user = user[: MAX_USER_MESSAGE - 1] + "…"
        return Failure(user, detail, permanent=True)
    return Failure(MSG_FAILED, detail)


def _error_field(body: object, name: str) -> str | None:
    value = body.get(name) if isinstance(body, dict) else None
    return str(value) if value is not None else None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds (or retry-after-ms); HTTP-date values are ignored."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if 0 <= seconds < float("inf"):
            return seconds
    return None
