"""Image provider adapter for the OpenAI images API (or any server speaking its protocol)."""

from __future__ import annotations

import binascii
import itertools
import json
import logging
import math
import random
import ssl
import time
from urllib.parse import urlsplit

import httpx
import httpx2
import openai
import pybase64
from openai.types import ImagesResponse

from hub.celery import calls_in_flight
from upstreams.costs import Usage

from .base import Generated, ProviderError, ProviderRequest
from .openai_post import PlainGenerations
from .openai_protocol import (
    KINDS,
    MSG_DOWNLOAD,
    MSG_MALFORMED,
    MSG_NOT_CONFIGURED,
    MSG_TIMED_OUT,
    MSG_UNAVAILABLE,
    Failure,
    ImageStream,
    request_fields,
    status_failure,
    stream_failure,
)

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0  # seconds, cap for the exponential backoff (Retry-After is honoured as sent)
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024

# Connections per HTTP client of the provider's pool (see _shared_http_clients).
POOL_SHARD_SIZE = 16


def _shared_http_clients(tls: ssl.SSLContext) -> list[httpx.Client]:
    """The process's HTTP clients for provider calls (the adapter is cached per process): keep-alive
    pools that hold, together, as many connections as the calls a worker keeps in flight —
    httpx's default (100, 20 kept alive) would queue calls or reconnect for each one at
    concurrency 500. Several pools of POOL_SHARD_SIZE rather than one of 1,000: the SDK's
    httpcore walks every connection of a pool each time a request starts or ends, so one pool of
    1,000 costs ~1,000 steps per call (bench sync-c1000-30s: the worker's CPU per generation 13 ms,
    against 8 ms at concurrency 32). Pools of 64 still left that walk ~10 % of the worker's py-spy
    samples at c1000; of 16, the worker's CPU fell 8 % (bench sync-c1000-5s --ramp 5: 15.9 and
    16.6 s against 17.6–19.0), its memory did not move. Timeouts are set per call from the
    generation's deadline."""
    size = calls_in_flight()
    shards = max(1, math.ceil(size / POOL_SHARD_SIZE))
    per_shard = math.ceil(size / shards)
    limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
    return [openai.DefaultHttpxClient(limits=limits, verify=tls) for _ in range(shards)]


class OpenAIImagesProvider:
    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        azure_api_version: str | None = None,
    ):
        # None lets the SDK read OPENAI_API_KEY / OPENAI_BASE_URL. The SDK's own retries are off:
        # ours respect the request deadline and are the only ones that happen. With an Azure
        # api-version, base_url is the Azure OpenAI resource's endpoint and the model a deployment.
        tls = httpx2.create_ssl_context()  # the SDK client's default one, shared (~1 MiB each otherwise)
        https = _shared_http_clients(tls)
        try:
            if azure_api_version:
                clients = [
                    openai.AzureOpenAI(
                        api_key=api_key,
                        azure_endpoint=base_url,
                        api_version=azure_api_version,
                        max_retries=0,
                        http_client=http,
                    )
                    for http in https
                ]
            else:
                clients = [
                    openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, http_client=http) for http in https
                ]
        except openai.OpenAIError as exc:  # e.g. no OPENAI_API_KEY; callers expect ProviderError
            raise ProviderError(MSG_NOT_CONFIGURED, permanent=False, detail=str(exc), kind="not_configured") from None
        self._api_key = clients[0].api_key
        self._clients = itertools.cycle(clients)  # each call takes the next pool
        # Azure's paths (deployments/…, api-version) are the SDK's to build: every call through it.
        self._plain = None if azure_api_version else PlainGenerations.for_client(clients[0], https[0], tls)
        self._max_retries = max_retries
        self._backoff_base = backoff_base

    def generate(self, request: ProviderRequest) -> Generated:
        attempts = self._max_retries + 1
        last = Failure(MSG_TIMED_OUT, "the deadline had passed before the first attempt")
        for attempt in range(1, attempts + 1):
            remaining = request.deadline - time.monotonic()
            if remaining <= 0:
                raise self._error(
                    MSG_TIMED_OUT, False, f"deadline passed after {attempt - 1} attempt(s); last: {last.detail}"
                )
            # A first attempt is the normal case (the generation's own lines tell its start and
            # end): said at DEBUG, a retry at INFO. Every INFO line costs each generation ~0.1 ms.
            log.log(
                logging.DEBUG if attempt == 1 else logging.INFO,
                "openai images: attempt %d/%d %s model=%s n=%d references=%d timeout=%.1fs",
                attempt,
                attempts,
                "edit" if request.references else "generate",
                request.model,
                request.n,
                len(request.references),
                remaining,
            )
            outcome = self._attempt(request, remaining)
            if not isinstance(outcome, Failure):
                return outcome
            if not outcome.retryable:
                log.warning("openai images: attempt %d failed, not retrying: %s", attempt, self._redact(outcome.detail))
                raise self._error(outcome.message, outcome.permanent, outcome.detail)
            last = outcome
            if attempt == attempts:
                break
            delay = outcome.retry_after if outcome.retry_after is not None else self._backoff(attempt)
            if time.monotonic() + delay >= request.deadline:
                raise self._error(
                    outcome.message,
                    False,
                    f"no time left to retry after {attempt} attempt(s) "
                    f"(next delay {delay:.2f}s); last: {outcome.detail}",
                )
            log.warning(
                "openai images: attempt %d/%d failed (%s), retrying in %.2fs",
                attempt,
                attempts,
                self._redact(outcome.detail),
                delay,
            )
            time.sleep(delay)
        raise self._error(
            last.message, False, f"gave up after {attempts} attempts; last: {last.detail}", retry_after=last.retry_after
        )

    def _attempt(self, request: ProviderRequest, timeout: float) -> Generated | Failure:
        # Failures are returned, not raised, so that the SDK exception (whose request carries the
        # Authorization header) never ends up chained onto the ProviderError.
        if self._plain is not None and not request.references:
            outcome = self._plain.post(request, timeout)
            return outcome if isinstance(outcome, Failure) else self._generated(outcome, request)
        try:
            result = self._call(request, timeout)
        except openai.APIStatusError as exc:
            return status_failure(exc.status_code, exc.body, exc.response.headers)
        except openai.APITimeoutError:
            return Failure(MSG_TIMED_OUT, "request timed out", retryable=True)
        except openai.APIConnectionError as exc:
            return Failure(MSG_UNAVAILABLE, f"connection error: {exc.message}", retryable=True)
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
            return Failure(MSG_MALFORMED, f"invalid response body: {type(exc).__name__}")
        except openai.APIError as exc:  # an `error` event in a streamed answer
            return stream_failure(exc.body)
        if isinstance(result, Failure):
            return result
        data = getattr(result, "data", None) if isinstance(result, ImagesResponse) else None
        if isinstance(data, list):  # the SDK's model, as the JSON body the plain POST parses
            items = [{"b64_json": getattr(item, "b64_json", None), "url": getattr(item, "url", None)} for item in data]
            usage = getattr(result, "usage", None)
            result = {"data": items, "usage": usage.model_dump() if usage is not None else None}
        return self._generated(result, request)

    # -- the call ---------------------------------------------------------------------------

    def _call(self, request: ProviderRequest, timeout: float) -> object:
        params = dict(request_fields(request), timeout=timeout)
        client = next(self._clients)
        if not request.references:
            answer = client.images.generate(**params)
        else:
            images = [(f"reference-{i}.png", data, "image/png") for i, data in enumerate(request.references)]
            if request.mask is not None:
                params["mask"] = ("mask.png", request.mask, "image/png")
            answer = client.images.edit(image=images, **params)
        return self._read_events(answer, request) if request.partial_images else answer

    @staticmethod
    def _read_events(events: openai.Stream, request: ProviderRequest) -> dict | Failure:
        """A streamed answer's events, read as they come (openai_protocol.ImageStream)."""
        stream = ImageStream(request)
        with events:
            for event in events:
                failure = stream.event(event.to_dict())
                if failure is not None:
                    return failure
        return stream.body()

    def _generated(self, body: object, request: ProviderRequest) -> Generated:
        """A response body's images and the `usage` it reports (what the call is billed by)."""
        return Generated(self._extract(body, request), Usage.from_response(body.get("usage")))

    def _extract(self, body: object, request: ProviderRequest) -> list[bytes]:
        """The images of a response body's `data` list. Neither path validates response bodies,
        so every field is checked here."""
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise self._error(MSG_MALFORMED, False, f"response has no `data` list ({type(body).__name__})")
        images = []
        for i, item in enumerate(data):
            if not isinstance(item, dict):
                raise self._error(MSG_MALFORMED, False, f"data[{i}] is not an object")
            b64, url = item.get("b64_json"), item.get("url")
            if isinstance(b64, str) and b64:
                try:  # pybase64: the standard library's decoder took ~8 ms of CPU for a 1.5 MiB image, this 0.2
                    images.append(pybase64.b64decode(b64, validate=True))
                except binascii.Error:
                    raise self._error(MSG_MALFORMED, False, f"data[{i}].b64_json is not valid base64") from None
            elif isinstance(url, str) and url:
                images.append(self._download(url, request.deadline))
            else:
                raise self._error(MSG_MALFORMED, False, f"data[{i}] has neither b64_json nor url")
        if len(images) > request.n:
            log.warning(
                "openai images: provider returned %d images for n=%d, keeping %d", len(images), request.n, request.n
            )
            images = images[: request.n]
        log.debug("openai images: received %d/%d image(s)", len(images), request.n)
        return images

    def _download(self, url: str, deadline: float) -> bytes:
        parts = urlsplit(url)
        where = f"{parts.scheme}://{parts.netloc}{parts.path}"  # the query may hold a signature
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._error(MSG_TIMED_OUT, False, f"no time left to download {where}")
        try:
            with httpx.stream("GET", url, timeout=remaining, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise self._error(MSG_DOWNLOAD, False, f"GET {where} answered HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_DOWNLOAD_BYTES:
                        raise self._error(MSG_DOWNLOAD, False, f"GET {where} exceeds {MAX_DOWNLOAD_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise self._error(MSG_TIMED_OUT, False, f"GET {where} ran past the deadline")
                return bytes(body)
        except httpx.TimeoutException:
            error = self._error(MSG_TIMED_OUT, False, f"GET {where} timed out")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = self._error(MSG_DOWNLOAD, False, f"GET {where} failed: {type(exc).__name__}")
        raise error

    # -- errors -----------------------------------------------------------------------------

    def _error(
        self, user_message: str, permanent: bool, detail: str, *, retry_after: float | None = None
    ) -> ProviderError:
        kind = "rejected" if permanent else KINDS.get(user_message, "failed")
        return ProviderError(
            self._redact(user_message),
            permanent=permanent,
            detail=self._redact(detail),
            kind=kind,
            retry_after=retry_after,
        )

    def _redact(self, text: str) -> str:
        key = self._api_key
        # Very short "keys" (test placeholders) would garble ordinary words if replaced.
        return text.replace(key, "[redacted]") if key and len(key) >= 8 else text

    def _backoff(self, attempt: int) -> float:
        return min(MAX_BACKOFF, self._backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
