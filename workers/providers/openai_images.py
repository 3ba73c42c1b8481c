"""Image provider adapter for the OpenAI images API (or any server speaking its protocol)."""

from __future__ import annotations

import binascii
import itertools
import json
import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import httpx2
import openai
import pybase64
from django.conf import settings
from openai.types import ImagesResponse

from .base import ProviderError, ProviderRequest

log = logging.getLogger(__name__)

RETRYABLE_4XX = frozenset({408, 409, 429})
MAX_BACKOFF = 30.0  # seconds, cap for the exponential backoff (Retry-After is honoured as sent)
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
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
class _Failure:
    message: str  # for the user
    detail: str  # for operators
    retryable: bool = False
    permanent: bool = False
    retry_after: float | None = None


# Connections per HTTP client of the provider's pool (see _shared_http_clients).
POOL_SHARD_SIZE = 16


def _shared_http_clients() -> list[httpx.Client]:
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
    size = settings.CELERY_WORKER_CONCURRENCY
    shards = max(1, math.ceil(size / POOL_SHARD_SIZE))
    per_shard = math.ceil(size / shards)
    limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
    tls = httpx2.create_ssl_context()  # the SDK client's default one, shared (~1 MiB each otherwise)
    return [openai.DefaultHttpxClient(limits=limits, verify=tls) for _ in range(shards)]


class OpenAIImagesProvider:
    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 4,
        backoff_base: float = 0.5,
    ):
        # None lets the SDK read OPENAI_API_KEY / OPENAI_BASE_URL. The SDK's own retries are off:
        # ours respect the request deadline and are the only ones that happen.
        try:
            clients = [
                openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, http_client=http)
                for http in _shared_http_clients()
            ]
        except openai.OpenAIError as exc:  # e.g. no OPENAI_API_KEY; callers expect ProviderError
            raise ProviderError(MSG_NOT_CONFIGURED, permanent=False, detail=str(exc), kind="not_configured") from None
        self._api_key = clients[0].api_key
        self._clients = itertools.cycle(clients)  # each call takes the next pool
        self._max_retries = max_retries
        self._backoff_base = backoff_base

    def generate(self, request: ProviderRequest) -> list[bytes]:
        attempts = self._max_retries + 1
        last = _Failure(MSG_TIMED_OUT, "the deadline had passed before the first attempt")
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
            if not isinstance(outcome, _Failure):
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
        raise self._error(last.message, False, f"gave up after {attempts} attempts; last: {last.detail}")

    def _attempt(self, request: ProviderRequest, timeout: float) -> list[bytes] | _Failure:
        # Failures are returned, not raised, so that the SDK exception (whose request carries the
        # Authorization header) never ends up chained onto the ProviderError.
        try:
            result = self._call(request, timeout)
        except openai.APIStatusError as exc:
            return self._status_failure(exc)
        except openai.APITimeoutError:
            return _Failure(MSG_TIMED_OUT, "request timed out", retryable=True)
        except openai.APIConnectionError as exc:
            return _Failure(MSG_UNAVAILABLE, f"connection error: {exc.message}", retryable=True)
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
            return _Failure(MSG_MALFORMED, f"invalid response body: {type(exc).__name__}")
        return self._extract(result, request)

    # -- the call ---------------------------------------------------------------------------

    def _call(self, request: ProviderRequest, timeout: float) -> object:
        # No response_format: gpt-image models reject it and always answer with b64_json.
        params = dict(
            model=request.model,
            prompt=request.prompt,
            size=request.size,
            quality=request.quality,
            n=request.n,
            timeout=timeout,
        )
        client = next(self._clients)
        if not request.references:
            return client.images.generate(**params)
        images = [(f"reference-{i}.png", data, "image/png") for i, data in enumerate(request.references)]
        return client.images.edit(image=images, **params)

    def _extract(self, result: object, request: ProviderRequest) -> list[bytes]:
        # The SDK does not validate response bodies, so every field is checked here.
        data = getattr(result, "data", None) if isinstance(result, ImagesResponse) else None
        if not isinstance(data, list):
            raise self._error(MSG_MALFORMED, False, f"response has no `data` list ({type(result).__name__})")
        images = []
        for i, item in enumerate(data):
            b64, url = getattr(item, "b64_json", None), getattr(item, "url", None)
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

    def _status_failure(self, exc: openai.APIStatusError) -> _Failure:
        status = exc.status_code
        where = (
            f"HTTP {status} type={_error_field(exc, 'type')} code={_error_field(exc, 'code')} "
            f"request_id={exc.request_id}"
        )
        if status in (401, 403):
            # Our credentials or account, not the user's request. The message may quote the key.
            return _Failure(MSG_AUTH, where)
        message = _error_field(exc, "message")
        detail = f"{where} message={message!r}"
        if status == 429:
            return _Failure(MSG_RATE_LIMITED, detail, retryable=True, retry_after=_retry_after(exc.response.headers))
        if status in RETRYABLE_4XX or status >= 500:
            return _Failure(MSG_UNAVAILABLE, detail, retryable=True, retry_after=_retry_after(exc.response.headers))
        if status in (400, 422):
            user = f"Provider rejected the request: {message}" if message else "Provider rejected the request"
            if len(user) > MAX_USER_MESSAGE:
                user = user[: MAX_USER_MESSAGE - 1] + "…"
            return _Failure(user, detail, permanent=True)
        return _Failure(MSG_FAILED, detail)

    def _error(self, user_message: str, permanent: bool, detail: str) -> ProviderError:
        kind = "rejected" if permanent else KINDS.get(user_message, "failed")
        return ProviderError(self._redact(user_message), permanent=permanent, detail=self._redact(detail), kind=kind)

    def _redact(self, text: str) -> str:
        key = self._api_key
        # Very short "keys" (test placeholders) would garble ordinary words if replaced.
        return text.replace(key, "[redacted]") if key and len(key) >= 8 else text

    def _backoff(self, attempt: int) -> float:
        return min(MAX_BACKOFF, self._backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def _error_field(exc: openai.APIStatusError, name: str) -> str | None:
    body = exc.body  # the SDK already unwrapped {"error": {...}}
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
