"""OpenAPI pieces every API shares: the error envelope, the responses each status means, the
headers the hub reads and sends, and the API-key security scheme (drf-spectacular)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ErrorDetailSerializer(serializers.Serializer):
    message = serializers.CharField()
    code = serializers.CharField(help_text="invalid_request, missingApiKey, insufficientCredits, notFound, …")
    type = serializers.CharField(help_text="OpenAI's error type, e.g. invalid_request_error")
    param = serializers.CharField(allow_null=True, help_text="the request field at fault, if any")
    generation_id = serializers.CharField(required=False, help_text="with generationFailed/generationCanceled")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_MEANINGS = {
    400: "invalid_request: invalid body, field or header (nothing charged)",
    401: "missingApiKey, invalidApiKey, expiredApiKey or emailNotVerified",
    402: "insufficientCredits (nothing charged)",
    403: "modelNotAllowed: the API key's limits do not include this model (nothing charged)",
    404: "notFound (also: someone else's generation)",
    405: "methodNotAllowed",
    409: "idempotencyConflict, or generationCanceled",
    429: "rateLimited (images per minute or concurrency of the key, or checkouts an hour; retry after"
    " Retry-After), or monthlyCreditCapReached (x-should-retry: false); nothing charged",
    500: "generationFailed (credits refunded) or internal_error",
    503: "paymentsUnavailable: Stripe could not open the checkout (nothing charged; retry)",
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    return {status: OpenApiResponse(ErrorSerializer, description=_MEANINGS[status]) for status in statuses}


SHOULD_RETRY = OpenApiParameter(
    "x-should-retry",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=True,
    enum=["true", "false"],
    description="Whether retrying the same request can succeed (the OpenAI SDKs honour it); on errors",
)


RATE_LIMIT_HEADERS = [
    OpenApiParameter(
        name,
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=[429],
        description=description,
    )
    for name, description in (
        ("Retry-After", "seconds to wait before a retry can pass"),
        ("x-ratelimit-limit", "the limit that was reached (images a minute, generations at once, credits a month)"),
        ("x-ratelimit-remaining", "what is left of it now"),
        ("x-ratelimit-reset", "seconds until it refills"),
    )
]


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apikeys.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer gih_live_…`"}
