from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.selectors import CreditsSummary, credits_summary
from billing.services import account_settle
from hub.openapi import SHOULD_RETRY, errors
from hub.timefmt import iso_z


class _Expiration(serializers.Serializer):
    credits = serializers.IntegerField()
    expires_at = serializers.DateTimeField()


class CreditsSerializer(serializers.Serializer):
    """Describes CreditsOutput for the OpenAPI schema."""

    credits = serializers.IntegerField()
    account_type = serializers.CharField()
    next_expiration = _Expiration(allow_null=True)


class CreditsOutput:
    """The public shape of a balance: `GET /credits`, and `balance` in a sync generation answer."""

    @staticmethod
    def data(summary: CreditsSummary) -> dict:
        soonest = summary.next_expiration
        return {
            "credits": summary.credits,
            "account_type": summary.account_type,
            "next_expiration": {"credits": soonest.credits, "expires_at": iso_z(soonest.expires_at)}
            if soonest
            else None,
        }


class CreditsRetrieveApi(APIView):
    OutputSerializer = CreditsOutput

    @extend_schema(responses={200: CreditsSerializer, **errors(401)}, parameters=[SHOULD_RETRY])
    def get(self, request: Request) -> Response:
        summary = credits_summary(account=account_settle(user=request.user))
        return Response(self.OutputSerializer.data(summary))
