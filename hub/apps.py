from django.apps import AppConfig
from django.conf import settings
from django.urls import register_converter


class HubConfig(AppConfig):
    name = "hub"

    def ready(self):
        import hub.celery  # noqa: F401 — the current Celery app in every Django process (shared tasks bind to it)
        from hub.http import openapi  # noqa: F401 — registers the API-key security scheme
        from hub.http.converters import IdentifierConverter

        register_converter(IdentifierConverter, "id")  # `<id:…>` in every app's URLs
        pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
        if isinstance(pool, dict):  # PostgreSQL: before the first connection makes the pool
            from hub.db import Connection

            pool.setdefault("connection_class", Connection)
