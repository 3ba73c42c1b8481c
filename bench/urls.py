"""The hub's URLs (whatever hub.settings routes today) plus `POST /bench/floor`."""

from importlib import import_module

from django.conf import settings
from django.urls import path

from bench.floor import FloorApi

_hub = import_module(settings.HUB_ROOT_URLCONF)

urlpatterns = [path("bench/floor", FloorApi.as_view()), *_hub.urlpatterns]

# Django takes the error handlers from the root URLconf, so keep the hub's JSON ones.
globals().update(
    {
        name: getattr(_hub, name)
        for name in ("handler400", "handler403", "handler404", "handler500")
        if hasattr(_hub, name)
    }
)
