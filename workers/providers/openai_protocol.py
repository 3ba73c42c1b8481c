"""What both of the adapter's paths to the OpenAI images API share (the SDK's, and the plain POST
of openai_post): the request's body fields, and the classification of the provider's failures —
the message the user sees, whether a retry may help, and the metric's kind of each."""

from collections.abc import Mapping
from dataclasses import dataclass

from .base import ProviderRequest

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
    return {**fields, **request.options}


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
