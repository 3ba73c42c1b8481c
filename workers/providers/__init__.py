"""Provider registry: catalog `backend` name → adapter class."""

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from workers.providers.base import Provider, ProviderError, ProviderRequest

ADAPTERS = {
    "local": "workers.providers.local.LocalProvider",
    "openai": "workers.providers.openai_images.OpenAIImagesProvider",
}

__all__ = ["Provider", "ProviderError", "ProviderRequest", "provider_for"]


@cache
def _adapter(name: str) -> Provider:
    if name not in ADAPTERS:
        raise ProviderError("This model is not available right now", permanent=True, detail=f"unknown backend {name!r}")
    return import_string(ADAPTERS[name])()


def provider_for(backend: str) -> Provider:
    """The adapter for a catalog row's backend; blank means the IMAGE_PROVIDER setting."""
    return _adapter(backend or settings.IMAGE_PROVIDER)
