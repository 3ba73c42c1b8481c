from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.selectors import CreditsSummary, credits_summary
from billing.services import account_settle
from hub.timefmt import iso_z


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

    def get(self, request: Request) -> Response:
        summary = credits_summary(account=account_settle(user=request.user))
        return Response(self.OutputSerializer.data(summary))
