"""Reading the model catalog: sizes → aspect ratio and resolution tier, and prices."""

from dataclasses import dataclass
from math import gcd

from generations.models import ImageModel
from hub.http.errors import InvalidRequest
from hub.infra.snapshot import Snapshot

TIER_LIMITS = [("1K", 1.6e6), ("2K", 4.2e6)]  # megapixel ceilings; anything larger is 4K


@dataclass(frozen=True)
class SizeShape:
    aspect_ratio: str
    tier: str


def size_shape(size: str) -> SizeShape:
    if size == "auto":
        return SizeShape("auto", "1K")  # priced and reported as 1K until the image exists
    width, _, height = size.partition("x")
    w, h = int(width), int(height)
    divisor = gcd(w, h)
    pixels = w * h
    tier = next((name for name, ceiling in TIER_LIMITS if pixels <= ceiling), "4K")
    return SizeShape(f"{w // divisor}:{h // divisor}", tier)


def aspect_ratios(model: ImageModel) -> list[str]:
    ratios = []
    for size in model.sizes:
        ratio = size_shape(size).aspect_ratio
        if ratio != "auto" and ratio not in ratios:
            ratios.append(ratio)
    return ratios


def model_get_enabled(model_id) -> ImageModel:
    if not isinstance(model_id, str) or not model_id:
        raise InvalidRequest("'model' is required and must be a string", param="model")
    model = _enabled_catalog().get(model_id)
    if model is None:
        raise InvalidRequest(f"Unknown model '{model_id[:64]}'", param="model")
    return model


def model_for_run(model_id: str) -> ImageModel:
    """The model a generation was made with, to run it: from the catalog snapshot, or from the
    table when it was disabled since (a queued generation still runs)."""
    return _enabled_catalog().get(model_id) or ImageModel.objects.get(pk=model_id)


def reference_count_check(model: ImageModel, count: int) -> None:
    if count > model.reference_image_limit:
        raise InvalidRequest(
            f"At most {model.reference_image_limit} reference images are allowed for {model.id}",
            param="reference_image",
        )


def price_per_image(model: ImageModel, *, quality: str, tier: str) -> int:
    try:
        price = int(model.prices[tier][quality])
    except (KeyError, TypeError, ValueError):
        price = 0
    if price <= 0:
        raise InvalidRequest(f"Quality '{quality}' at {tier} is not available for {model.id}", param="quality")
    return price


def enabled_models():
    return ImageModel.objects.filter(enabled=True)


# The enabled models by id (hub.infra.snapshot: read on every generation request, edited rarely).
_catalog = Snapshot(lambda: {model.id: model for model in ImageModel.objects.filter(enabled=True)})


def _enabled_catalog() -> dict[str, ImageModel]:
    return _catalog.get()
