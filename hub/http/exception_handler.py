"""The one place that turns every API error into the contract's envelope."""

import logging

from django.core.exceptions import (
    BadRequest,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import Http404, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views import defaults
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.settings import api_settings

from hub.http.csp import PAGE_PATH_PREFIXES
from hub.http.errors import HubError, MonthlyCreditCapReached, RateLimited

logger = logging.getLogger(__name__)

_DRF_ERRORS = {
    drf.ParseError: (400, "invalid_request", "Malformed request body"),
    drf.UnsupportedMediaType: (
        400,
        "invalid_request",
        "Unsupported Content-Type: send application/json or multipart/form-data",
    ),
    drf.NotAuthenticated: (401, "missingApiKey", "Missing API key: send 'Authorization: Bearer gih_live_…'"),
    drf.AuthenticationFailed: (401, "invalidApiKey", "Invalid API key"),
    drf.MethodNotAllowed: (405, "methodNotAllowed", "Method not allowed"),
    drf.NotAcceptable: (406, "notAcceptable", "Only application/json responses are available"),
    drf.Throttled: (429, "rateLimited", "Too many requests"),
    drf.PermissionDenied: (403, "forbidden", "Not allowed"),
    drf.NotFound: (404, "notFound", "Resource not found"),
}


# What Django refuses to read in a request (the DATA_UPLOAD_* limits, hub/settings/generations.py) and
# its other SuspiciousOperations: a 400 `invalid_request`, in a DRF view as Django answers them elsewhere.
_UNREADABLE = {
    TooManyFieldsSent: "Too many query parameters or form fields",
    TooManyFilesSent: "Too many files",
    RequestDataTooBig: "Request body too large",
    MultiPartParserError: "Malformed request body",
}


# OpenAI's `error.type` for each status, so the official SDKs raise informative exceptions.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_credits",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    406: "invalid_request_error",
    409: "conflict_error",
    429: "rate_limit_error",
}


def error_body(code: str, message: str, *, status: int, param: str | None = None, **extra) -> dict:
    error_type = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "code": code, "type": error_type, "param": param, **extra}}


def should_retry(status: int, code: str) -> bool:
    """What `x-should-retry` says (the OpenAI SDKs honour it over their own rules): a retry of
    the same request cannot succeed after any 4xx but a rate limit (not a monthly cap, which
    lasts until the month ends), nor after a generation that ran and failed (it was refunded; a
    retry is a new, paid attempt the user decides on)."""
    return (status == 429 and code != MonthlyCreditCapReached.code) or (status >= 500 and code != "generationFailed")


def handle(exc, context):
    status, body = _envelope(exc)
    response = Response(body, status=status, headers=exc.headers if isinstance(exc, RateLimited) else None)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return _with_retry_header(response, status=status, code=body["error"]["code"])


def _with_retry_header(response, *, status: int, code: str):
    response["x-should-retry"] = "true" if should_retry(status, code) else "false"
    return response


def _envelope(exc) -> tuple[int, dict]:
    if isinstance(exc, HubError):
        extra = {}
        if getattr(exc, "generation_id", None):
            extra["generation_id"] = exc.generation_id
        return exc.status, error_body(exc.code, exc.message, status=exc.status, param=exc.param, **extra)
    if isinstance(exc, (SuspiciousOperation, BadRequest)):
        return 400, _unreadable_request(exc)
    if isinstance(exc, Http404):
        return 404, error_body("notFound", "Resource not found", status=404)
    if isinstance(exc, PermissionDenied):
        return 403, error_body("forbidden", "Not allowed", status=403)
    if isinstance(exc, drf.ValidationError):
        param, message = _first_error(exc.detail)
        return 400, error_body("invalid_request", message, status=400, param=param)
    for cls, (status, code, message) in _DRF_ERRORS.items():
        if isinstance(exc, cls):
            return status, error_body(code, message, status=status)
    if isinstance(exc, drf.APIException):
        return exc.status_code, error_body("invalid_request", str(exc.detail), status=exc.status_code)
    logger.exception("unhandled API error")
    return 500, error_body("internal_error", "Internal server error", status=500)


def _first_error(detail) -> tuple[str | None, str]:
    """(param, message) of a serializer's first refusal: its field's name (none for the request
    as a whole), and the field's first message."""
    param = None
    if isinstance(detail, dict):
        name, detail = next(iter(detail.items()))
        param = None if name == api_settings.NON_FIELD_ERRORS_KEY else name
    while isinstance(detail, (list, dict)):
        detail = next(iter(detail.values() if isinstance(detail, dict) else detail))
    return param, str(detail)


def _unreadable_request(exc) -> dict:
    message = next((text for cls, text in _UNREADABLE.items() if isinstance(exc, cls)), "Bad request")
    return error_body("invalid_request", message, status=400)


def _json(body: dict, *, status: int) -> JsonResponse:
    return _with_retry_header(JsonResponse(body, status=status), status=status, code=body["error"]["code"])


def json_404(request, exception=None):
    return _json(error_body("notFound", "Resource not found", status=404), status=404)


def json_500(request):
    return _json(error_body("internal_error", "Internal server error", status=500), status=500)


def bad_request(request, exception=None):
    """handler400: a request Django refused outside a DRF view (too many fields read by a
    middleware or a page's view, a malformed form body, a disallowed host…). The pages answer
    an HTML page (400.html), everything else the envelope."""
    if request.path.startswith(PAGE_PATH_PREFIXES):
        return _with_retry_header(defaults.bad_request(request, exception), status=400, code="invalid_request")
    return _json(_unreadable_request(exception), status=400)
