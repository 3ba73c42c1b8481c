"""Provider registry: catalog `backend` name → adapter class; an upstream row → its adapter.

Every adapter but `local` makes one attempt per call: workers.upstream_calls retries, within the
generation's deadline and across the model's upstreams, each call under its upstream's budget.
"""

import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from hub.infra.singletons import per_process
from upstreams.credentials import credential_open
from upstreams.targets import Target
from workers.providers.base import Generated, Provider, ProviderError, ProviderRequest

LOCAL = "local"
ADAPTERS = {
    LOCAL: "workers.providers.local.LocalProvider",
    "openai": "workers.providers.openai_images.OpenAIImagesProvider",
}

__all__ = [
    "LOCAL",
    "Generated",
    "Provider",
    "ProviderError",
    "ProviderRequest",
    "backend_name",
    "provider_for",
    "upstream_adapter",
    "warm_up",
]


@per_process
def _adapter(name: str) -> Provider:
    if name not in ADAPTERS:
        raise ProviderError(
            "This model is not available right now",
            permanent=True,
            detail=f"unknown backend {name!r}",
            kind="not_configured",
        )
    if name == LOCAL:
        return import_string(ADAPTERS[name])()
    return import_string(ADAPTERS[name])(max_retries=0)


_upstream_adapters: dict[tuple, Provider] = {}
_upstream_adapters_lock = threading.Lock()


def upstream_adapter(target: Target) -> Provider:
    """The adapter of one upstream: the default upstream's is its backend's; a row's is made once
    per process and again when its URL, credential or adapter changes (the credential decrypted
    only then)."""
    if target.is_default:
        return provider_for(target.adapter)
    key = (target.upstream_id, target.adapter, target.base_url, target.api_version, target.credential_encrypted)
    with _upstream_adapters_lock:
        adapter = _upstream_adapters.get(key)
        if adapter is None:
            for stale in [known for known in _upstream_adapters if known[0] == target.upstream_id]:
                del _upstream_adapters[stale]  # its old credential or URL
            adapter = _upstream_adapters[key] = import_string(ADAPTERS["openai"])(
                api_key=_credential(target),
                base_url=target.base_url or None,
                azure_api_version=target.api_version if target.adapter == "azure" else None,
                max_retries=0,
            )
        return adapter


def _credential(target: Target) -> str:
    try:
        return credential_open(target.credential_encrypted)
    except ImproperlyConfigured as exc:
        raise ProviderError(
            "This model is not available right now",
            permanent=False,
            detail=f"upstream {target.name}: {exc}",
            kind="not_configured",
        ) from None


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
    first generation, and before it freezes its start-up objects (hub.infra.gcfreeze). Not configured
    (or the local adapter refused): nothing to make; a generation's call says why."""
    try:
        provider_for(settings.IMAGE_PROVIDER)
    except ProviderError:
        pass
