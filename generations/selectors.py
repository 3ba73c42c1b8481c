from dataclasses import dataclass
from datetime import datetime

from django.contrib.postgres.aggregates import JSONBAgg
from django.db.models import OuterRef, Subquery
from django.db.models.functions import JSONObject

from generations import fair
from generations.models import GeneratedImage, Generation, GenerationEvent, GenerationStatus, WebhookDelivery
from hub.compiled import INT_MARKER, STR_MARKER, CompiledQuery
from hub.http.errors import NotFound
from hub.infra import backends

# The annotation with_images() adds, read back by images_of().
_IMAGES_READ = "images_read"


@dataclass(frozen=True)
class ImageRead:
    """A stored image, as much of it as the API's answer shows."""

    id: str
    storage_key: str
    created_at: datetime


def with_images(generations):
    """`generations` with each one's images read in the same query, on PostgreSQL: a sync answer
    and a poll of a succeeded generation are then one round trip, not two (the images' own read
    was ~5 % of a web process's samples at sync-c32-0s). images_of() reads them back. Elsewhere
    (the embedded SQLite) the queryset as it is, and images_of() reads the images itself."""
    if not backends.postgresql():
        return generations
    images = GeneratedImage.objects.filter(generation_id=OuterRef("pk")).order_by().values("generation_id")
    each = JSONObject(id="id", storage_key="storage_key", created_at="created_at")
    return generations.annotate(
        **{_IMAGES_READ: Subquery(images.annotate(rows=JSONBAgg(each, order_by="index")).values("rows"))}
    )


_IMAGES = CompiledQuery(lambda pk: GeneratedImage.objects.filter(generation_id=pk), STR_MARKER)


def images_of(generation: Generation) -> list:
    """A succeeded generation's images by index: those with_images() read with its row, else
    read now. No other generation has any (only a finalize that delivered images marks one
    succeeded): a query saved on every submit and every poll of an unfinished one."""
    if generation.status != GenerationStatus.SUCCEEDED:
        return []
    read = getattr(generation, _IMAGES_READ, None)
    if read is None:
        return _IMAGES.all(generation.id)
    return [ImageRead(row["id"], row["storage_key"], datetime.fromisoformat(row["created_at"])) for row in read]


# A poll's read (GET /generations/{id}), compiled once (hub.compiled): clients poll every second.
_OWNED = CompiledQuery(
    lambda pk, owner_id: with_images(Generation.objects.filter(pk=pk, owner_id=owner_id))[:1], STR_MARKER, INT_MARKER
)


def generation_get_for_owner(*, owner, generation_id: str) -> Generation:
    """The owner's generation with its model and images (the account page shows them), or
    NotFound — the same answer for someone else's id."""
    generation = (
        Generation.objects.select_related("model")
        .prefetch_related("images")
        .filter(pk=generation_id, owner=owner)
        .first()
    )
    if generation is None:
        raise NotFound("Generation not found")
    return generation


def generation_get_for_owner_api(*, owner, generation_id: str) -> Generation:
    """The owner's generation with its images (with_images), or NotFound as above: the API's
    answer shows the model's id only, so a poll is one query, not three (the row, the model, the
    images)."""
    generation = generation_find_for_owner_api(owner=owner, generation_id=generation_id)
    if generation is None:
        raise NotFound("Generation not found")
    return generation


def generation_find_for_owner_api(*, owner, generation_id: str) -> Generation | None:
    """generation_get_for_owner_api, or None: a streamed answer's re-read (generation_watch) of a
    generation that may have been deleted meanwhile."""
    return _OWNED.first(generation_id, owner.pk)


def generation_queue_position(generation: Generation) -> int | None:
    """generation_queue_positions of one: for an async request's 202 the place the hand-over
    after its charge found (no round trip); a sync request's 202 comes after a wait, and reads."""
    if generation.status != GenerationStatus.QUEUED:
        return None
    if generation.is_async and generation.queue_position_at_submit is not None:
        return generation.queue_position_at_submit
    return fair.fair_positions([generation]).get(generation.id)


def generation_queue_positions(generations) -> dict[str, int]:
    """The place of each queued generation among those waiting for its model's upstreams (1:
    the next to run; generations.fair), by id; the others (not waiting, or no Redis) left out."""
    return fair.fair_positions([g for g in generations if g.status == GenerationStatus.QUEUED])


def generations_for_owner(*, owner):
    return Generation.objects.filter(owner=owner).select_related("model").prefetch_related("images")


def webhook_deliveries_for_generation(*, generation: Generation) -> list[WebhookDelivery]:
    """The generation's webhook deliveries (one per event), each with its attempts."""
    return list(WebhookDelivery.objects.filter(generation=generation).prefetch_related("attempts_made"))


def webhook_deliveries_for_account(*, user, limit: int = 10) -> list[WebhookDelivery]:
    """The account's own events' latest deliveries (credits.low, credits.expiring), newest first."""
    deliveries = WebhookDelivery.objects.filter(user=user, generation__isnull=True).order_by("-created_at")
    return list(deliveries[:limit])


def generation_events(*, generation: Generation) -> list[GenerationEvent]:
    """The generation's history, oldest first."""
    return list(GenerationEvent.objects.filter(generation=generation).order_by("created_at", "id"))


def unfinished_without_key_count(*, owner) -> int:
    """How many of the owner's generations made without an API key (the account page's
    playground) are still queued or running: what that page's concurrency limit counts. The
    statuses are named (an IN the (status, deadline_at) index can serve; a NOT IN of the finished
    ones it cannot), so a busy account's finished generations need not be walked."""
    unfinished = (GenerationStatus.QUEUED, GenerationStatus.RUNNING)
    return Generation.objects.filter(status__in=unfinished, owner=owner, api_key__isnull=True).count()
