"""The one place that turns every API error into the contract's envelope."""

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFilesSent
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from hub.errors import GenerationFailed, HubError

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


def error_body(code: str, message: str, **extra) -> dict:
    return {"error": {"message": message, "code": code, **extra}}


def handle(exc, context):
    status, body = _envelope(exc)
    response = Response(body, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _envelope(exc) -> tuple[int, dict]:
    if isinstance(exc, HubError):
        extra = {}
        if isinstance(exc, GenerationFailed) and exc.generation_id:
            extra["generation_id"] = exc.generation_id
        return exc.status, error_body(exc.code, exc.message, **extra)
    if isinstance(exc, (RequestDataTooBig, TooManyFilesSent)):
        return 400, error_body("invalid_request", "Request body too large or too many files")
    if isinstance(exc, Http404):
        return 404, error_body("notFound", "Resource not found")
    if isinstance(exc, PermissionDenied):
        return 403, error_body("forbidden", "Not allowed")
    for cls, (status, code, message) in _DRF_ERRORS.items():
        if isinstance(exc, cls):
            return status, error_body(code, message)
    if isinstance(exc, drf.APIException):
        return exc.status_code, error_body("invalid_request", str(exc.detail))
    logger.exception("unhandled API error")
    return 500, error_body("internal_error", "Internal server error")


def json_404(request, exception=None):
    return JsonResponse(error_body("notFound", "Resource not found"), status=404)


def json_500(request):
    return JsonResponse(error_body("internal_error", "Internal server error"), status=500)


def json_400(request, exception=None):
    return JsonResponse(error_body("invalid_request", "Bad request"), status=400)
