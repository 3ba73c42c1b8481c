"""Adding, enabling, disabling and pricing upstreams, (re)keying their credentials, and recording
each provider call with its cost."""

from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from generations.models import ImageModel
from hub.http.errors import InvalidRequest
from upstreams.costs import Usage, call_cost, prices_check
from upstreams.credentials import CredentialsLocked, credential_hint, credential_reseal, credential_seal
from upstreams.models import Adapter, Upstream, UpstreamCall, UpstreamRoute
from upstreams.targets import Target


def upstream_create(
    *,
    name: str,
    adapter: str,
    api_key: str,
    models: dict[str, str],
    base_url: str = "",
    api_version: str = "",
    priority: int = 0,
    weight: int = 1,
    concurrency: int | None = None,
    images_per_minute: int | None = None,
    prices: dict | None = None,
) -> Upstream:
    """A new upstream serving `models` (catalog id → the upstream's model id, blank: the
    catalog's). Every input is checked here: a bad one is an InvalidRequest naming it."""
    if not name or slugify(name) != name or len(name) > 64:
        raise InvalidRequest(f"{name[:64]!r} is not a name: use letters, digits, - and _ (64 at most)", param="name")
    upstream = Upstream(
        name=name,
        adapter=adapter,
        base_url=base_url,
        api_version=api_version,
        priority=priority,
        weight=weight,
        concurrency=concurrency,
        images_per_minute=images_per_minute,
        prices=prices_check(prices),
    )
    upstream_check(upstream)
    credential_set(upstream=upstream, api_key=api_key)
    unknown = sorted(set(models) - set(ImageModel.objects.filter(pk__in=list(models)).values_list("pk", flat=True)))
    if not models or unknown:
        raise InvalidRequest(f"Unknown model(s): {', '.join(unknown) or '(none given)'}", param="models")
    try:
        with transaction.atomic():
            upstream.save()
            UpstreamRoute.objects.bulk_create(
                UpstreamRoute(upstream=upstream, model_id=model, upstream_model=own) for model, own in models.items()
            )
    except IntegrityError:
        raise InvalidRequest(f"An upstream named {name!r} exists already", param="name") from None
    return upstream


def upstream_check(upstream: Upstream) -> None:
    """What the admin's form and the command both hold an upstream to."""
    if upstream.adapter not in Adapter.values:
        raise InvalidRequest(f"Unknown provider {upstream.adapter[:40]!r}: use {' or '.join(Adapter.values)}")
    if upstream.base_url:
        try:
            URLValidator(schemes=["http", "https"])(upstream.base_url)
        except ValidationError:
            raise InvalidRequest(f"{upstream.base_url[:100]!r} is not an http(s) URL", param="base_url") from None
    if upstream.adapter == Adapter.AZURE and not (upstream.base_url and upstream.api_version):
        raise InvalidRequest("Azure OpenAI needs the resource's endpoint (--base-url) and an --api-version")


def upstream_set_prices(*, name: str, prices: dict) -> Upstream:
    """Price the upstream's calls from now on (a call recorded before keeps its cost)."""
    updated = Upstream.objects.filter(name=name).update(prices=prices_check(prices))
    if not updated:
        raise InvalidRequest(f"No upstream is named {name[:64]!r}", param="name")
    return Upstream.objects.get(name=name)


def upstream_call_record(*, call: UpstreamCall) -> None:
    """Append one provider call of a generation (upstream_call_row) now."""
    call.save(force_insert=True)


def upstream_call_row(
    *,
    generation_id: str,
    model_id: str,
    target: Target,
    started_at: datetime,
    latency_ms: int,
    outcome: str,
    quality: str,
    size: str,
    images: int = 0,
    usage: Usage | None = None,
) -> UpstreamCall:
    """One provider call of a generation, unsaved (the worker writes the last call of an attempt
    with the attempt's finish: hub.compiled.insert_when), priced by its upstream's prices (a
    failed call costs nothing: providers bill what they answer)."""
    if outcome == "ok":
        cost = call_cost(target.prices, quality=quality, size=size, images=images, usage=usage)
    else:
        cost = Decimal(0) if target.prices else None
    usage = usage or Usage()
    return UpstreamCall(
        generation_id=generation_id,
        model_id=model_id,
        upstream_id=None if target.is_default else target.upstream_id,
        upstream_name=target.name,
        started_at=started_at,
        latency_ms=latency_ms,
        outcome=outcome,
        images=images,
        input_text_tokens=usage.input_text,
        input_image_tokens=usage.input_image,
        output_image_tokens=usage.output_image,
        output_text_tokens=usage.output_text,
        cost=cost,
    )


def credential_set(*, upstream: Upstream, api_key: str) -> None:
    """Encrypt `api_key` onto the (unsaved or saved) row; the caller saves it."""
    if not api_key or api_key != api_key.strip() or any(ch.isspace() for ch in api_key):
        raise InvalidRequest("The API key is empty or has spaces in it", param="api_key")
    try:
        upstream.credential_encrypted = credential_seal(api_key)
    except CredentialsLocked as exc:
        raise InvalidRequest(str(exc), param="api_key") from None
    upstream.credential_hint = credential_hint(api_key)


def upstream_set_enabled(*, name: str, enabled: bool) -> Upstream:
    updated = Upstream.objects.filter(name=name).update(enabled=enabled)
    if not updated:
        raise InvalidRequest(f"No upstream is named {name[:64]!r}", param="name")
    return Upstream.objects.get(name=name)


def credentials_rotate() -> int:
    """Encrypt every credential again with HUB_UPSTREAM_KEYS' first key (after a new key was put
    first); then the old key can leave the list. The number re-encrypted."""
    count = 0
    with transaction.atomic():
        for upstream in Upstream.objects.select_for_update().only("pk", "credential_encrypted"):
            try:
                sealed = credential_reseal(upstream.credential_encrypted)
            except CredentialsLocked as exc:
                raise InvalidRequest(f"Upstream {upstream.pk}: {exc}") from None
            Upstream.objects.filter(pk=upstream.pk).update(credential_encrypted=sealed)
            count += 1
    return count
