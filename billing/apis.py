import logging

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.models import CreditPack
from billing.payments import checkout_start, stripe_event_apply
from billing.selectors import CreditsSummary, credits_summary, packs_for_sale
from billing.services import account_get_or_create, account_settle
from billing.stripe_gateway import InvalidStripeEvent, event_verify, stripe_enabled
from hub.http.errors import InvalidRequest, NotFound
from hub.http.openapi import RATE_LIMIT_HEADERS, SHOULD_RETRY, errors
from hub.http.public_url import base_url
from hub.infra.timefmt import iso_z

logger = logging.getLogger(__name__)


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


class CreditPackSerializer(serializers.Serializer):
    """Describes CreditPackOutput for the OpenAPI schema."""

    id = serializers.CharField(help_text="pack_…")
    object = serializers.CharField(default="credit_pack")
    name = serializers.CharField()
    credits = serializers.IntegerField()
    price_cents = serializers.IntegerField(help_text="in the currency's smallest unit")
    currency = serializers.CharField(help_text="ISO code, lower case: usd")
    expires_days = serializers.IntegerField(
        allow_null=True, help_text="the bought credits expire this many days after the payment; null: never"
    )


class CreditPackListSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = CreditPackSerializer(many=True)


class CheckoutSerializer(serializers.Serializer):
    session_id = serializers.CharField(help_text="the Stripe Checkout Session's id (cs_…)")
    checkout_url = serializers.URLField(help_text="Stripe's payment page: open it in a browser to pay")


class CreditPackOutput:
    @staticmethod
    def data(pack: CreditPack) -> dict:
        return {
            "id": pack.id,
            "object": "credit_pack",
            "name": pack.name,
            "credits": pack.credits,
            "price_cents": pack.price_cents,
            "currency": pack.currency,
            "expires_days": pack.expires_days,
        }


NOT_SELLING = "notFound also when the hub sells no credits (no Stripe settings)"


class CreditPackListApi(APIView):
    OutputSerializer = CreditPackOutput

    @extend_schema(
        operation_id="credit_packs_list",
        responses={200: CreditPackListSerializer, **errors(401, 404)},
        parameters=[SHOULD_RETRY],
        description=f"The credit packs for sale. {NOT_SELLING}.",
    )
    def get(self, request: Request) -> Response:
        if not stripe_enabled():
            raise NotFound("This hub sells no credits")
        return Response({"object": "list", "data": [self.OutputSerializer.data(p) for p in packs_for_sale()]})


class CreditPackCheckoutApi(APIView):
    @extend_schema(
        operation_id="credit_pack_checkout",
        request=None,
        responses={201: CheckoutSerializer, **errors(401, 404, 429, 503)},
        parameters=[SHOULD_RETRY, *RATE_LIMIT_HEADERS],
        description="Open a Stripe Checkout Session for the pack: the credits are granted once Stripe"
        f" confirms the payment (its webhook). {NOT_SELLING}, or the pack is not for sale.",
    )
    def post(self, request: Request, pack_id: str) -> Response:
        checkout = checkout_start(
            account=account_get_or_create(user=request.user),
            pack_id=pack_id,
            customer_email=request.user.email,
            return_url=base_url(request) + reverse("accounts:billing"),
        )
        return Response({"session_id": checkout.session_id, "checkout_url": checkout.url}, status=201)


class StripeWebhookApi(APIView):
    """`POST /stripe/webhook`, called by Stripe: no API key, the signature is the authentication
    (stripe_gateway.event_verify). Answers 200 once the event is applied — or was before — and
    400 for a body that is not a recent event signed with the endpoint's secret (nothing
    applied); any other failure is a 5xx, and Stripe delivers the event again later."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        if not stripe_enabled():
            raise NotFound()
        try:
            event = event_verify(payload=request.body, signature=request.headers.get("Stripe-Signature"))
        except InvalidStripeEvent as error:
            logger.warning("stripe webhook refused: %s", error)
            raise InvalidRequest(f"Not a valid Stripe event: {error}", param="Stripe-Signature") from error
        applied = stripe_event_apply(event=event)
        return Response({"received": True, "applied": applied})
