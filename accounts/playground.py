"""The account pages' playground (/account/playground/): a signed-in user's generation, submitted
through the API's own service (generations.services.generation_submit: the same checks, the same
charge, the same history) and watched through the API's events stream with the session.

Its generations carry no API key, so a key's limits cannot apply; the account type's stand in:
only the models the plan allows are offered, and no more unfinished playground generations at
once than the plan's concurrency.
"""

from dataclasses import dataclass

from django.conf import settings

from apikeys.selectors import email_verification_pending
from billing.selectors import account_type_limits
from generations.catalog import enabled_models
from generations.models import Generation, ImageModel
from generations.selectors import unfinished_without_key_count
from generations.services import generation_submit
from generations.services.precheck import request_priced
from hub.http.errors import EmailNotVerified, HubError, InvalidRequest
from hub.limits import Limits

# Partial images asked per image (OpenAI's 0–3): the page shows them sharpening into the final
# ones. The worker asks the provider for them only where it can relay them (with Redis).
PARTIAL_IMAGES = 2


@dataclass(frozen=True)
class PlaygroundModel:
    """A model as the page offers it: its sizes and qualities, and the credits per image of each
    (size, quality) the catalog prices — by the charge's own pricing (request_priced)."""

    id: str
    sizes: list[str]
    qualities: list[str]
    prices: dict[str, dict[str, int]]

    def price(self, size: str, quality: str) -> int | None:
        return self.prices.get(size, {}).get(quality)

    def as_json(self) -> dict:
        return {"sizes": self.sizes, "qualities": self.qualities, "prices": self.prices}


def playground_models(*, limits: Limits) -> list[PlaygroundModel]:
    """The enabled models the plan allows (`limits`: its account type's), each with its prices."""
    offered = []
    for model in enabled_models().order_by("id"):
        if limits.allowed_models and model.id not in limits.allowed_models:
            continue
        offered.append(PlaygroundModel(model.id, list(model.sizes), list(model.qualities), _prices(model)))
    return offered


def _prices(model: ImageModel) -> dict[str, dict[str, int]]:
    prices: dict[str, dict[str, int]] = {}
    for size in model.sizes:
        for quality in model.qualities:
            try:
                _, _, price = request_priced(model.id, size, quality, 0, {})
            except InvalidRequest:  # not priced at this size's tier: not offered
                continue
            prices.setdefault(size, {})[quality] = price
    return prices


class PlaygroundBusy(HubError):
    status = 429
    code = "rateLimited"


def playground_submit(
    *, user, account_type: str, model_id: str, prompt: str, size: str, quality: str, n: int, root: str
) -> Generation:
    """Charge and queue the user's generation as an async API request would be (no key, no
    webhook), asking for partial images; the API's refusals (HubError) reach the caller before
    anything is charged."""
    if settings.REQUIRE_EMAIL_VERIFICATION and email_verification_pending(owner=user):
        raise EmailNotVerified("Confirm your email address before generating: open the link we emailed you at sign-up")
    concurrency = account_type_limits(account_type=account_type).concurrency
    if concurrency is not None and unfinished_without_key_count(owner=user) >= concurrency:
        raise PlaygroundBusy(
            f"Your plan runs {concurrency} generation{'s' if concurrency > 1 else ''} at once from here:"
            " wait for one to finish"
        )
    params = {
        "model_id": model_id,
        "prompt": prompt,
        "size": size,
        "quality": quality,
        "n": n,
        "is_async": True,
        "options": {},
        "partial_images": PARTIAL_IMAGES,
    }
    outcome = generation_submit(
        owner=user,
        api_key=None,
        params=params,
        files=[],
        idempotency_key=None,
        max_wait=None,
        webhook_base_url=root,
    )
    return outcome.generation
