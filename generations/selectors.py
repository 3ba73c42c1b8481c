from generations.models import Generation, WebhookDelivery
from hub.compiled import INT_MARKER, STR_MARKER, CompiledQuery
from hub.errors import NotFound

# A poll's read (GET /generations/{id}), compiled once (hub.compiled): clients poll every second.
_OWNED = CompiledQuery(
    lambda pk, owner_id: Generation.objects.filter(pk=pk, owner_id=owner_id)[:1], STR_MARKER, INT_MARKER
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
    """The owner's generation alone, or NotFound as above: the API's answer reads the images of
    a succeeded one itself (generations.apis.GenerationOutput) and shows the model's id only, so
    a poll of an unfinished generation is one query, not three (the row, the model, the images)."""
    generation = _OWNED.first(generation_id, owner.pk)
    if generation is None:
        raise NotFound("Generation not found")
    return generation


def generations_for_owner(*, owner):
    return Generation.objects.filter(owner=owner).select_related("model").prefetch_related("images")


def webhook_deliveries_for_generation(*, generation: Generation) -> list[WebhookDelivery]:
    """The generation's webhook deliveries (one per event), each with its attempts."""
    return list(WebhookDelivery.objects.filter(generation=generation).prefetch_related("attempts_made"))
