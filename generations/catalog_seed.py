"""The catalog's initial row, used by the seed migration and by tests that flush the database."""

from generations.options import ALL_OPTIONS

GPT_IMAGE_2 = {
    "id": "gpt-image-2",
    "provider": "openai",
    "backend": "",
    "upstream_model": "gpt-image-2",
    "owned_by": "openai",
    "created": 1767225600,
    "sizes": ["auto", "1024x1024", "1536x1024", "1024x1536"],
    "qualities": ["auto", "low", "medium", "high"],
    "prices": {"1K": {"low": 2, "medium": 4, "high": 8, "auto": 8}},
    "reference_image_limit": 16,
    "options": ALL_OPTIONS,
    "enabled": True,
}


def seed_catalog(image_model_class) -> None:
    """The row, with the fields `image_model_class` has (a migration's historical model may
    predate some)."""
    fields = {field.name for field in image_model_class._meta.get_fields()}
    defaults = {name: value for name, value in GPT_IMAGE_2.items() if name in fields}
    image_model_class.objects.get_or_create(id=GPT_IMAGE_2["id"], defaults=defaults)
