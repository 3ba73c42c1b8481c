"""`GET /api/v1/usage`: what each of the caller's keys was charged, per UTC day."""

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apikeys.selectors import usage_for_owner
from hub.http.errors import InvalidRequest
from hub.http.openapi import SHOULD_RETRY, errors
from hub.infra.timefmt import utc_day

USAGE_MAX_DAYS = 366


class UsageRowSerializer(serializers.Serializer):
    """Describes UsageListApi.OutputSerializer for the OpenAPI schema."""

    object = serializers.CharField(default="usage")
    date = serializers.DateField(help_text="UTC day the generations were created on")
    api_key_id = serializers.CharField()
    api_key_prefix = serializers.CharField(help_text="the key's display prefix, e.g. gih_live_AbC4")
    api_key_name = serializers.CharField()
    images = serializers.IntegerField(help_text="images charged for, minus those refunded")
    credits_charged = serializers.IntegerField()
    credits_refunded = serializers.IntegerField()
    credits = serializers.IntegerField(help_text="charged minus refunded")


class UsageListSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    days = serializers.IntegerField()
    data = UsageRowSerializer(many=True)


class UsageListApi(APIView):
    class InputSerializer:
        @staticmethod
        def days(request: Request) -> int:
            text = request.query_params.get("days", "30")
            if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= USAGE_MAX_DAYS:
                raise InvalidRequest(f"days must be a whole number from 1 to {USAGE_MAX_DAYS}", param="days")
            return int(text)

    class OutputSerializer:
        @staticmethod
        def data(row) -> dict:
            return {
                "object": "usage",
                "date": row.day.isoformat(),
                "api_key_id": row.api_key_id,
                "api_key_prefix": row.api_key.display_prefix,
                "api_key_name": row.api_key.name,
                "images": row.images_net,
                "credits_charged": row.credits_charged,
                "credits_refunded": row.credits_refunded,
                "credits": row.credits_net,
            }

    @extend_schema(
        operation_id="usage_list",
        parameters=[
            OpenApiParameter(
                "days", OpenApiTypes.INT, OpenApiParameter.QUERY, description="the last N UTC days (1–366, default 30)"
            ),
            SHOULD_RETRY,
        ],
        responses={200: UsageListSerializer, **errors(400, 401)},
    )
    def get(self, request: Request) -> Response:
        days = self.InputSerializer.days(request)
        rows = usage_for_owner(owner=request.user, today=utc_day(timezone.now()), days=days)
        return Response({"object": "list", "days": days, "data": [self.OutputSerializer.data(row) for row in rows]})
