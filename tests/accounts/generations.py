"""Finished generations made through the real services, without a worker (non-transactional
tests never run on_commit, so nothing reaches the broker), and the images a page shows."""

import html
import re

from billing.services import account_get_or_create
from generations.services import StoredImage, generation_claim, generation_create, generation_finalize
from tests.images import image_bytes
from workers import storage


def make_generation(owner, *, n: int = 1, delivered: int | None = None, prompt: str = "A lighthouse at dawn"):
    """n images requested (low quality, 2 credits each), `delivered` of them stored (default all)."""
    generation = generation_create(
        owner=owner, api_key=None, model_id="gpt-image-2", prompt=prompt, size="1024x1024", quality="low",
        n=n, is_async=True, references=[],
    )
    attempt = generation_claim(generation_id=generation.id).attempts
    account = account_get_or_create(user=owner)
    images = []
    for index in range(n if delivered is None else delivered):
        data = image_bytes(size=(32, 32), color=(40, 90 + 40 * index, 200))
        key = storage.image_key(account_id=account.pk, generation_id=generation.id, index=index)
        storage.object_save(key=key, data=data, content_type="image/png")
        images.append(StoredImage(index=index, storage_key=key, content_type="image/png", width=32, height=32, byte_size=len(data)))
    error = None if images else ("provider_error", "The provider failed")
    return generation_finalize(generation_id=generation.id, attempt=attempt, images=images, error=error)


def image_sources(page_html: str) -> list[str]:
    """The src of every <img>: /media/… URLs on local storage, presigned URLs on S3."""
    return [html.unescape(src) for src in re.findall(r'<img [^>]*src="([^"]+)"', page_html)]
