"""Server-sent events (the WHATWG `text/event-stream` format): the frames, the keep-alive
comment and the streaming response with the headers proxies need to pass events on live."""

import json
from collections.abc import Iterator

from django.http import StreamingHttpResponse
from rest_framework.negotiation import BaseContentNegotiation

# A comment line: sent while there is nothing to say (every settings.STREAM_KEEPALIVE_SECONDS), so
# that no proxy cuts an idle read (ingress-nginx and AWS's load balancers at 60 s, Cloudflare at 100 s).
KEEP_ALIVE = ": keep-alive\n\n"


def frame(event: str, data: dict, *, event_id: int | str | None = None) -> str:
    """One event; its data is one line of JSON (json.dumps escapes newlines)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def frame_with_base64(event: str, data: dict, name: str, b64: str) -> str:
    """One event whose data is `data`'s JSON with one more field, `name`, a base64 string (which
    needs no JSON escaping: the caller vouches that it is one) inserted as it is: a relayed
    image's ~90 KB is copied once rather than scanned and escaped by json.dumps (bench
    stream-c16-2s: the larger part of a frame's CPU)."""
    head = json.dumps(data, separators=(",", ":"))[:-1]
    return f'event: {event}\ndata: {head},"{name}":"' + b64 + '"}\n\n'


def last_event_id(header: str | None) -> int:
    """The `Last-Event-ID` a reconnecting client sends (our ids are integers); 0 if none."""
    try:
        return max(int(header or 0), 0)
    except ValueError:
        return 0


def response(events: Iterator[str]) -> StreamingHttpResponse:
    """`events` streamed as they come: not cached, and not held by nginx (X-Accel-Buffering)."""
    answer = StreamingHttpResponse(events, content_type="text/event-stream")
    answer["Cache-Control"] = "no-cache"
    answer["X-Accel-Buffering"] = "no"
    return answer


class IgnoreAccept(BaseContentNegotiation):
    """An event stream is answered whatever the `Accept` (EventSource sends text/event-stream,
    curl */*); its errors (401, 404) before the stream are the contract's JSON envelope."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
