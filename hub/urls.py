from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from billing.apis import CreditsRetrieveApi
from generations.apis import GenerationCreateApi, GenerationRetrieveApi, ModelListApi
from hub.health import healthz
from hub.media import media

api_v1 = [
    path("models", ModelListApi.as_view(), name="models"),
    path("credits", CreditsRetrieveApi.as_view(), name="credits"),
    path("images/generations", GenerationCreateApi.as_view(), name="generation-create"),
    path("generations/<str:generation_id>", GenerationRetrieveApi.as_view(), name="generation-detail"),
]

urlpatterns = [
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    path("admin/", admin.site.urls),
    path("account/", include("accounts.urls")),
    path("", RedirectView.as_view(pattern_name="accounts:home")),
    path("healthz", healthz),
    re_path(r"^media/(?P<path>.*)$", media),
]

handler404 = "hub.exception_handler.json_404"
handler500 = "hub.exception_handler.json_500"
handler400 = "hub.exception_handler.json_400"
