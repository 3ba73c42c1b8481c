from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve

from generations.apis import CreditsRetrieveApi, GenerationCreateApi, GenerationRetrieveApi, ModelListApi
from hub.health import healthz

api_v1 = [
    path("models", ModelListApi.as_view(), name="models"),
    path("credits", CreditsRetrieveApi.as_view(), name="credits"),
    path("images/generations", GenerationCreateApi.as_view(), name="generation-create"),
    path("generations/<str:generation_id>", GenerationRetrieveApi.as_view(), name="generation-detail"),
]

urlpatterns = [
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    path("admin/", admin.site.urls),
    path("healthz", healthz),
]

if not settings.USE_S3:
    # Embedded default: the hub serves its own media (ids in the path are unguessable).
    urlpatterns.append(re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT}))

handler404 = "hub.exception_handler.json_404"
handler500 = "hub.exception_handler.json_500"
handler400 = "hub.exception_handler.json_400"
