"""Test data built through the real services, so tests see what users would."""

from itertools import count

from accounts.services import user_create
from apikeys.services import api_key_create
from billing.models import GrantSource
from billing.services import account_get_or_create, credits_grant
from generations.services import StoredImage, generation_claim, generation_create, generation_finalize
from hub.infra import storage
from tests.images import image_bytes

_emails = count(1)


def make_user(*, credits: int = 0, expires_at=None, account_type: str | None = None, email: str | None = None):
    email = email or f"user{next(_emails)}@example.com"
    user = user_create(email=email, password="correct horse battery")
    account = account_get_or_create(user=user)
    if account_type:
        account.account_type = account_type
        account.save(update_fields=["account_type"])
    if credits:
        credits_grant(account=account, amount=credits, source=GrantSource.PURCHASE, expires_at=expires_at)
    return user


def make_key(user, **kwargs) -> str:
    return api_key_create(owner=user, **kwargs)[1]


def bearer(raw_key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}


def create_generation(owner, *, n: int = 1, quality: str = "low", prompt: str = "A lighthouse at dawn", **webhook):
    """A charged, queued async generation (non-transactional tests never run on_commit, so
    nothing reaches the broker). gpt-image-2 at 1024x1024: low 2, high 8 credits per image.
    `webhook`: generation_create's webhook_url / webhook_events / webhook_base_url."""
    return generation_create(
        owner=owner,
        api_key=None,
        model_id="gpt-image-2",
        prompt=prompt,
        size="1024x1024",
        quality=quality,
        n=n,
        is_async=True,
        references=[],
        **webhook,
    )


def make_generation(
    owner, *, n: int = 1, delivered: int | None = None, prompt: str = "A lighthouse at dawn", **webhook
):
    """A finished generation: n images requested (low quality, 2 credits each), `delivered` of
    them stored (default all), through the real claim and finalize."""
    generation = create_generation(owner, n=n, prompt=prompt, **webhook)
    attempt = generation_claim(generation_id=generation.id).attempts
    images = []
    for index in range(n if delivered is None else delivered):
        data = image_bytes(size=(32, 32), color=(40, 90 + 40 * index, 200))
        key = storage.image_key(generation_id=generation.id, index=index)
        storage.object_save(key=key, data=data, content_type="image/png")
        images.append(
            StoredImage(
                index=index, storage_key=key, content_type="image/png", width=32, height=32, byte_size=len(data)
            )
        )
    error = None if images else ("provider_error", "The provider failed")
    return generation_finalize(generation_id=generation.id, attempt=attempt, images=images, error=error)
