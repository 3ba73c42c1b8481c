"""The plain POST beside the SDK (the fast path hub.infra.fastpaths.openai_post fences): a
generation without references sent on a urllib3 pool, its answer classified as the SDK's would be."""

from __future__ import annotations

import json
import ssl

import httpx
import httpx2
import openai
import urllib3

from hub.celery import calls_in_flight
from hub.infra.fastpaths.openai_post import OPENAI_POST
from hub.infra.proxies import proxied

from .base import ProviderRequest
from .openai_protocol import (
    MSG_MALFORMED,
    MSG_TIMED_OUT,
    MSG_UNAVAILABLE,
    Failure,
    ImageStream,
    request_fields,
    sse_data,
    status_failure,
)

# Redirects are followed, as the SDK's client follows them (20 at most, Authorization dropped
# across hosts); nothing else is retried here: the provider's own loop retries with backoff.
REDIRECTS_ONLY = urllib3.Retry(total=None, connect=0, read=0, other=0, status=0, redirect=20)
STREAM_CHUNK = 64 * 1024


def _transport_failure(exc: BaseException | None) -> Failure:
    """A request that got no answer, classified as the SDK classifies its httpx errors."""
    if isinstance(exc, (urllib3.exceptions.TimeoutError, TimeoutError)) and not isinstance(
        exc,
        urllib3.exceptions.NewConnectionError,  # a subclass of ConnectTimeoutError
    ):
        return Failure(MSG_TIMED_OUT, "request timed out", retryable=True)
    return Failure(MSG_UNAVAILABLE, f"connection error: {type(exc).__name__}", retryable=True)


class PlainGenerations:
    """`POST images/generations` (a generation without references, nearly all of them) sent on a
    urllib3 pool, with the SDK client's own URL and headers, the JSON parsed here: the fast path
    hub.infra.fastpaths.openai_post says why and how to turn it off. The SDK still sends edits
    (multipart references) and the calls for_client leaves to it; both paths share the deadline,
    the retries and the classification of failures (status_failure, the adapter's _extract), and
    tests/providers runs every failure on both and holds their requests equal."""

    def __init__(self, url: str, headers: dict[str, str], tls: ssl.SSLContext):
        self._url = url
        self._headers = headers
        # A pool holds connections to one host without a walk per request (urllib3 keeps its idle
        # connections in a queue), so one pool serves every call in flight.
        self._pool = urllib3.PoolManager(
            maxsize=calls_in_flight(), block=False, retries=REDIRECTS_ONLY, ssl_context=tls
        )

    @classmethod
    def for_client(cls, client: openai.OpenAI, http: httpx.Client, tls: ssl.SSLContext) -> PlainGenerations | None:
        """None where the SDK must send every call: the fast path off, a proxied or unusual base URL (another scheme,
        a query the SDK would merge), or credentials other than a plain API key (workload identity
        tokens are fetched and refreshed by the SDK)."""
        if not OPENAI_POST.on():
            return None
        base_url = str(client.base_url)
        base = urllib3.util.parse_url(base_url)
        url = f"{base_url.rstrip('/')}/images/generations"
        auth = client.auth_headers  # {"Authorization": "Bearer <key>"}, or {} for other credentials
        if base.scheme not in ("http", "https") or base.query or base.fragment or proxied(url):
            return None
        if not auth or client.workload_identity is not None:
            return None
        # What the SDK sends: its HTTP client's headers (Accept-Encoding, Connection), its own
        # (User-Agent, X-Stainless-*, OpenAI-Organization and -Project when set) and its authorization.
        headers = httpx2.Headers(http.headers)  # case-insensitive: the SDK's Accept and User-Agent replace httpx's
        headers.update({name: value for name, value in client.default_headers.items() if isinstance(value, str)})
        headers.update(auth)
        return cls(url, dict(headers), tls)

    def post(self, request: ProviderRequest, timeout: float) -> object | Failure:
        """The response's JSON body (a streamed one's completed images as such a body), or the
        failure: as the SDK's call would classify it."""
        streamed = request.partial_images > 0
        try:
            response = self._pool.request(
                "POST",
                self._url,
                body=json.dumps(request_fields(request), separators=(",", ":")).encode(),
                # and the two the SDK adds per request (its own retries are off: always 0)
                headers={**self._headers, "X-Stainless-Retry-Count": "0", "X-Stainless-Read-Timeout": str(timeout)},
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                preload_content=not streamed,
            )
            if streamed and response.status < 400 and _is_event_stream(response):
                return _read_stream(response, request)
            data = response.data
        except urllib3.exceptions.MaxRetryError as exc:  # a connection failure, or too many redirects
            return _transport_failure(exc.reason)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return _transport_failure(exc)
        try:
            body = json.loads(data)
        except ValueError as exc:  # not JSON, or not UTF-8
            body = exc
        if response.status >= 400:  # what httpx's raise_for_status raises on, below the SDK
            error = body.get("error", body) if isinstance(body, dict) else None
            return status_failure(response.status, error, response.headers)
        if isinstance(body, ValueError):
            return Failure(MSG_MALFORMED, f"invalid response body: {type(body).__name__}")
        return body


def _is_event_stream(response: urllib3.BaseHTTPResponse) -> bool:
    return response.headers.get("Content-Type", "").startswith("text/event-stream")


def _read_stream(response: urllib3.BaseHTTPResponse, request: ProviderRequest) -> object | Failure:
    """A streamed answer, its partial images handed on as they come (openai_protocol.ImageStream).
    Its transport errors are the caller's to classify; a stream left unread is closed, not pooled."""
    stream = ImageStream(request)
    done = False
    try:
        for data in sse_data(response.stream(STREAM_CHUNK)):
            if data == b"[DONE]":
                break
            try:
                event = json.loads(data)
            except ValueError as exc:
                return Failure(MSG_MALFORMED, f"invalid stream event: {type(exc).__name__}")
            failure = stream.event(event)
            if failure is not None:
                return failure
        done = True
        return stream.body()
    finally:
        if not done:
            response.close()
        response.release_conn()
