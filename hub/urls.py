from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from apikeys.apis import UsageListApi
from billing.apis import CreditPackCheckoutApi, CreditPackListApi, CreditsRetrieveApi, StripeWebhookApi
from generations.apis import (
    GenerationCancelApi,
    GenerationCreateApi,
    GenerationRetrieveApi,
    ImageEditApi,
    ModelListApi,
    ModelRetrieveApi,
)
from generations.events_api import GenerationEventsApi
from hub.http.health import healthz, readyz
from hub.http.media import media

PUBLIC = {"authentication_classes": [], "permission_classes": [AllowAny]}  # the schema and its docs page

api_v1 = [
    path("models", ModelListApi.as_view(), name="models"),
    path("models/<id:model_id>", ModelRetrieveApi.as_view(), name="model-detail"),
    path("credits", CreditsRetrieveApi.as_view(), name="credits"),
    path("credit-packs", CreditPackListApi.as_view(), name="credit-packs"),
    path("credit-packs/<id:pack_id>/checkout", CreditPackCheckoutApi.as_view(), name="credit-pack-checkout"),
    path("usage", UsageListApi.as_view(), name="usage"),
    path("images/generations", GenerationCreateApi.as_view(), name="generation-create"),
    path("images/edits", ImageEditApi.as_view(), name="image-edit"),
    path("generations/<id:generation_id>", GenerationRetrieveApi.as_view(), name="generation-detail"),
    path("generations/<id:generation_id>/events", GenerationEventsApi.as_view(), name="generation-events"),
    path("generations/<id:generation_id>/cancel", GenerationCancelApi.as_view(), name="generation-cancel"),
    path("openapi.json", SpectacularJSONAPIView.as_view(**PUBLIC), name="openapi"),
]

urlpatterns = [
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="v1:openapi", **PUBLIC), name="api-docs"),
    path("admin/", admin.site.urls),
    path("stripe/webhook", StripeWebhookApi.as_view(), name="stripe-webhook"),
    path("account/", include("accounts.urls")),
    path("", RedirectView.as_view(pattern_name="accounts:home")),
    path("healthz", healthz),
    path("readyz", readyz),
    re_path(r"^media/(?P<path>.*)$", media),
]

handler404 = "hub.http.exception_handler.json_404"
handler500 = "hub.http.exception_handler.json_500"
handler400 = "hub.http.exception_handler.bad_request"
