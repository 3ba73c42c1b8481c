from generations.models import Generation, WebhookDelivery
from hub.errors import NotFound


def generation_get_for_owner(*, owner, generation_id: str) -> Generation:
    """The owner's generation, or NotFound — the same answer for someone else's id."""
    generation = (
        Generation.objects.select_related("model")
        .prefetch_related("images")
        .filter(pk=generation_id, owner=owner)
        .first()
    )
    if generation is None:
        raise NotFound("Generation not found")
    return generation


def generations_for_owner(*, owner):
    return Generation.objects.filter(owner=owner).select_related("model").prefetch_related("images")


def webhook_deliveries_for_generation(*, generation: Generation) -> list[WebhookDelivery]:
    """The generation's webhook deliveries (one per event), each with its attempts."""
    return list(WebhookDelivery.objects.filter(generation=generation).prefetch_related("attempts_made"))
