"""Provider registry: catalog `backend` name → adapter class."""

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from workers.providers.base import Provider, ProviderError, ProviderRequest

LOCAL = "local"
ADAPTERS = {
    LOCAL: "workers.providers.local.LocalProvider",
    "openai": "workers.providers.openai_images.OpenAIImagesProvider",
}

__all__ = ["LOCAL", "Provider", "ProviderError", "ProviderRequest", "backend_name", "provider_for", "warm_up"]


@cache
def _adapter(name: str) -> Provider:
    if name not in ADAPTERS:
        raise ProviderError(
            "This model is not available right now",
            permanent=True,
            detail=f"unknown backend {name!r}",
            kind="not_configured",
        )
    return import_string(ADAPTERS[name])()


def backend_name(backend: str) -> str:
    """The adapter that serves a catalog row: its backend; blank means the IMAGE_PROVIDER setting."""
    return backend or settings.IMAGE_PROVIDER


def provider_for(backend: str) -> Provider:
    """The adapter for a catalog row's backend. The placeholder `local` adapter is refused unless
    ALLOW_LOCAL_PROVIDER (not on a shared database by default): checked here, at every generation,
    as well as at start-up (workers.checks), since the catalog can be edited while the hub runs."""
    name = backend_name(backend)
    if name == LOCAL and not settings.ALLOW_LOCAL_PROVIDER:
        raise ProviderError(
            "This model is not available right now",
            permanent=False,
            detail="the local provider is refused here: set IMAGE_PROVIDER or the model's backend "
            "(or HUB_ALLOW_LOCAL_PROVIDER=true for a demo or a test run)",
            kind="not_configured",
        )
    return _adapter(name)


def warm_up() -> None:
    """Make the configured provider's adapter now (OpenAI: the SDK's modules and one client per
    HTTP pool, ~60,000 objects and ~85 ms of CPU), at a worker's start-up rather than in its
    first generation, and before it freezes its start-up objects (hub.gcfreeze). Not configured
    (or the local adapter refused): nothing to make; a generation's call says why."""
    try:
        provider_for(settings.IMAGE_PROVIDER)
    except ProviderError:
        pass
