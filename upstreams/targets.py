"""Where a catalog model's calls may go: its enabled upstreams, or the default upstream."""

import hashlib
import os
from dataclasses import dataclass, field

from django.conf import settings

from generations.models import ImageModel
from hub.infra.snapshot import Snapshot
from upstreams.models import UpstreamRoute

DEFAULT_NAME = "default"


@dataclass(frozen=True)
class Target:
    """One upstream as a call sees it: an Upstream row (and its route for the model), or the
    default upstream of the environment (no row: `credential_encrypted` empty)."""

    upstream_id: str  # names its shared state in Redis (upstreams.budget, upstreams.circuit)
    name: str
    adapter: str  # openai, azure; for the default, the model's backend (or IMAGE_PROVIDER)
    base_url: str = ""
    api_version: str = ""
    credential_encrypted: str = ""
    upstream_model: str = ""  # blank: the catalog model's own upstream model
    priority: int = 0
    weight: int = 1
    concurrency: int | None = None  # None: learned from the provider's 429s
    images_per_minute: int | None = None
    prices: dict = field(default_factory=dict, hash=False, compare=False)  # checked (upstreams.costs); {}: none

    @property
    def is_default(self) -> bool:
        return not self.credential_encrypted


def default_target(adapter: str, *, base_url: str | None = None) -> Target:
    """The environment's upstream (OPENAI_API_KEY, OPENAI_BASE_URL, as the SDK reads them), for a
    model with no enabled upstream. Its state in Redis is named after its adapter and base URL,
    so deployments (and test runs) pointing at different servers keep theirs apart."""
    base_url = os.environ.get("OPENAI_BASE_URL", "") if base_url is None else base_url
    digest = hashlib.sha256(f"{adapter}|{base_url}".encode()).hexdigest()[:16]
    return Target(upstream_id=f"default-{digest}", name=DEFAULT_NAME, adapter=adapter, base_url=base_url)


def _routes() -> dict[str, list[Target]]:
    routes: dict[str, list[Target]] = {}
    rows = UpstreamRoute.objects.filter(upstream__enabled=True).select_related("upstream", "model")
    for route in rows:
        up = route.upstream
        routes.setdefault(route.model_id, []).append(
            Target(
                upstream_id=up.pk,
                name=up.name,
                adapter=up.adapter,
                base_url=up.base_url,
                api_version=up.api_version,
                credential_encrypted=up.credential_encrypted,
                upstream_model=route.upstream_model or route.model.upstream_model or route.model.id,
                priority=up.priority,
                weight=up.weight,
                concurrency=up.concurrency,
                images_per_minute=up.images_per_minute,
                prices=up.prices,
            )
        )
    return routes


# Every enabled route by model id, read at most every CATALOG_CACHE_SECONDS per process (hub.infra.snapshot).
_snapshot = Snapshot(_routes)


def upstream_targets(model: ImageModel) -> list[Target]:
    """The model's enabled upstreams; none: [] (the caller serves it by its backend)."""
    return _snapshot.get().get(model.id, [])


def learned_cap() -> int:
    """The most calls in flight an upstream without a configured limit is ever let grow to: what
    one gevent worker holds. Not this process's own concurrency — the learned limit is shared by
    every worker, and a prefork or threads worker runs only a few tasks."""
    return settings.WORKER_GREEN_CONCURRENCY
