"""The cheap checks of a generation request, before any upload is decoded or anything is
written (generations.services.submit): the catalog's rules and options, the key's models, a
balance that cannot cover the request."""

from billing.models import CreditAccount
from billing.services import account_as_read
from generations.catalog import model_get_enabled, price_per_image, reference_count_check, size_shape
from generations.limits import limits_effective, limits_model_check
from generations.models import IdempotencyKey
from generations.options import options_check
from hub.http.errors import InsufficientCredits, InvalidRequest


def generation_precheck(
    *,
    owner,
    api_key,
    model_id: str,
    size: str,
    quality: str,
    n: int,
    reference_count: int,
    idempotency_key: str | None,
    options: dict | None = None,
) -> CreditAccount:
    """The cheap refusals, before any upload is decoded: the catalog's rules, a model the key
    may not use, and a balance that cannot cover n × price (a read without a lock; the charge
    itself decides). A request under a known Idempotency-Key is left to generation_create
    before anything is checked: a replay answers like the first whatever changed since (the
    balance spent, the model disabled or taken off the key). An option the model does not offer
    (generations.options) is refused here too. The rate and concurrency limits
    are taken by generation_create only: taking them here too would count one request twice.
    Returns the account it read, for generation_create."""
    account = account_as_read(user=owner)  # read with the API key: its balance, without a lock
    if idempotency_key is not None and IdempotencyKey.objects.filter(owner=owner, key=idempotency_key).exists():
        return account
    model, _, price = request_priced(model_id, size, quality, reference_count, options or {})
    limits_model_check(limits=limits_effective(api_key=api_key, account_type=account.account_type), model_id=model.id)
    balance = account.balance
    if balance < n * price:
        raise InsufficientCredits(f"Not enough credits: {n * price} needed, {balance} available")
    return account


def request_priced(model_id: str, size: str, quality: str, reference_count: int, options: dict):
    """(model, size shape, price per image) for a request the catalog accepts."""
    model = model_get_enabled(model_id)
    if size not in model.sizes:
        raise InvalidRequest(
            f"Unsupported size '{size}' for {model.id}; supported: {', '.join(model.sizes)}", param="size"
        )
    if quality not in model.qualities:
        raise InvalidRequest(
            f"Unsupported quality '{quality}'; supported: {', '.join(model.qualities)}", param="quality"
        )
    reference_count_check(model, reference_count)
    options_check(model, options)
    shape = size_shape(size)
    return model, shape, price_per_image(model, quality=quality, tier=shape.tier)
