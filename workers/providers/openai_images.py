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
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import httpx2
import openai
import pybase64
import urllib3
from openai.types import ImagesResponse

from hub.celery import calls_in_flight
from hub.infra.proxies import proxied
from upstreams.costs import Usage

from .base import Generated, ProviderError, ProviderRequest

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


# Redirects are followed, as the SDK's client follows them (20 at most, Authorization dropped
# across hosts); nothing else is retried here: the provider's own loop retries with backoff.
REDIRECTS_ONLY = urllib3.Retry(total=None, connect=0, read=0, other=0, status=0, redirect=20)


def _transport_failure(exc: BaseException | None) -> _Failure:
    """A request that got no answer, classified as the SDK classifies its httpx errors."""
    if isinstance(exc, (urllib3.exceptions.TimeoutError, TimeoutError)) and not isinstance(
        exc,
        urllib3.exceptions.NewConnectionError,  # a subclass of ConnectTimeoutError
    ):
        return _Failure(MSG_TIMED_OUT, "request timed out", retryable=True)
    return _Failure(MSG_UNAVAILABLE, f"connection error: {type(exc).__name__}", retryable=True)


def _fields(request: ProviderRequest) -> dict:
    """The request's body fields, for either path: its options (background, output_format, …)
    among them, as asked. No response_format: gpt-image models reject it and always answer with
    b64_json."""
    fields = dict(model=request.model, prompt=request.prompt, size=request.size, quality=request.quality, n=request.n)
    return {**fields, **request.options}


class _PlainGenerations:
    """`POST images/generations` (a generation without references, nearly all of them) sent on a
    urllib3 pool, with the SDK client's own URL and headers, the JSON parsed here.

    Why not through the SDK: its request machinery (the parameter transform, request options,
    httpx's client and httpcore's pool, the response model) made the call 1.36 ms of CPU on a quiet
    worker against 0.64 ms for this POST (bench stages, 64 KiB images), and cost the worker ~2 ms a
    generation at a thousand calls in flight (bench sync-c1000-5s: bench/RESULTS.md). The SDK
    still sends edits (multipart references) and the calls for_client leaves to it; both paths
    share the deadline, the retries and the classification of failures (_status_failure,
    _extract), and tests/providers runs every failure on both and holds their requests equal."""

    def __init__(self, url: str, headers: dict[str, str], tls: ssl.SSLContext):
        self._url = url
        self._headers = headers
        # A pool holds connections to one host without a walk per request (urllib3 keeps its idle
        # connections in a queue), so one pool serves every call in flight.
        self._pool = urllib3.PoolManager(
            maxsize=calls_in_flight(), block=False, retries=REDIRECTS_ONLY, ssl_context=tls
        )

    @classmethod
    def for_client(cls, client: openai.OpenAI, http: httpx.Client, tls: ssl.SSLContext) -> _PlainGenerations | None:
        """None where the SDK must send every call: a proxied or unusual base URL (another scheme,
        a query the SDK would merge), or credentials other than a plain API key (workload identity
        tokens are fetched and refreshed by the SDK)."""
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

    def post(self, request: ProviderRequest, timeout: float) -> object | _Failure:
        """The response's JSON body, or the failure: as the SDK's call would classify it."""
        try:
            response = self._pool.request(
                "POST",
                self._url,
                body=json.dumps(_fields(request), separators=(",", ":")).encode(),
                # and the two the SDK adds per request (its own retries are off: always 0)
                headers={**self._headers, "X-Stainless-Retry-Count": "0", "X-Stainless-Read-Timeout": str(timeout)},
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
            )
        except urllib3.exceptions.MaxRetryError as exc:  # a connection failure, or too many redirects
            return _transport_failure(exc.reason)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return _transport_failure(exc)
        try:
            body = json.loads(response.data)
        except ValueError as exc:  # not JSON, or not UTF-8
            body = exc
        if response.status >= 400:  # what httpx's raise_for_status raises on, below the SDK
            error = body.get("error", body) if isinstance(body, dict) else None
            return _status_failure(response.status, error, response.headers)
        if isinstance(body, ValueError):
            return _Failure(MSG_MALFORMED, f"invalid response body: {type(body).__name__}")
        return body


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
        self._plain = None if azure_api_version else _PlainGenerations.for_client(clients[0], https[0], tls)
        self._max_retries = max_retries
        self._backoff_base = backoff_base

    def generate(self, request: ProviderRequest) -> Generated:
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
        raise self._error(
            last.message, False, f"gave up after {attempts} attempts; last: {last.detail}", retry_after=last.retry_after
        )

    def _attempt(self, request: ProviderRequest, timeout: float) -> Generated | _Failure:
        # Failures are returned, not raised, so that the SDK exception (whose request carries the
        # Authorization header) never ends up chained onto the ProviderError.
        if self._plain is not None and not request.references:
            outcome = self._plain.post(request, timeout)
            return outcome if isinstance(outcome, _Failure) else self._generated(outcome, request)
        try:
            result = self._call(request, timeout)
        except openai.APIStatusError as exc:
            return _status_failure(exc.status_code, exc.body, exc.response.headers)
        except openai.APITimeoutError:
            return _Failure(MSG_TIMED_OUT, "request timed out", retryable=True)
        except openai.APIConnectionError as exc:
            return _Failure(MSG_UNAVAILABLE, f"connection error: {exc.message}", retryable=True)
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
            return _Failure(MSG_MALFORMED, f"invalid response body: {type(exc).__name__}")
        data = getattr(result, "data", None) if isinstance(result, ImagesResponse) else None
        if isinstance(data, list):  # the SDK's model, as the JSON body the plain POST parses
            items = [{"b64_json": getattr(item, "b64_json", None), "url": getattr(item, "url", None)} for item in data]
            usage = getattr(result, "usage", None)
            result = {"data": items, "usage": usage.model_dump() if usage is not None else None}
        return self._generated(result, request)

    # -- the call ---------------------------------------------------------------------------

    def _call(self, request: ProviderRequest, timeout: float) -> object:
        params = dict(_fields(request), timeout=timeout)
        client = next(self._clients)
        if not request.references:
            return client.images.generate(**params)
        images = [(f"reference-{i}.png", data, "image/png") for i, data in enumerate(request.references)]
        if request.mask is not None:
            params["mask"] = ("mask.png", request.mask, "image/png")
        return client.images.edit(image=images, **params)

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


def _status_failure(status: int, body: object, headers: Mapping[str, str]) -> _Failure:
    """An HTTP error status, classified; `body` is the error object (the SDK's `APIStatusError.body`,
    i.e. a JSON body's "error" field when it has one)."""
    where = f"HTTP {status} type={_error_field(body, 'type')} code={_error_field(body, 'code')} "
    where += f"request_id={headers.get('x-request-id')}"
    if status in (401, 403):
        # Our credentials or account, not the user's request. The message may quote the key.
        return _Failure(MSG_AUTH, where)
    message = _error_field(body, "message")
    detail = f"{where} message={message!r}"
    if status == 429:
        return _Failure(MSG_RATE_LIMITED, detail, retryable=True, retry_after=_retry_after(headers))
    if status in RETRYABLE_4XX or status >= 500:
        return _Failure(MSG_UNAVAILABLE, detail, retryable=True, retry_after=_retry_after(headers))
    if status in (400, 422):
        user = f"Provider rejected the request: {message}" if message else "Provider rejected the request"
        if len(user) > MAX_USER_MESSAGE:
            user = user[: MAX_USER_MESSAGE - 1] + "…"
        return _Failure(user, detail, permanent=True)
    return _Failure(MSG_FAILED, detail)


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
