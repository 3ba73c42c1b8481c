from django import template
from django.utils import timezone

from billing.money import money as billing_money
from hub.http.public_url import base_url
from hub.infra import storage

register = template.Library()


@register.filter
def key_status(key) -> str:
    return key.status(timezone.now())


@register.filter
def grant_status(grant) -> str:
    if grant.remaining > 0:
        return "active"
    return "expired" if grant.expired_at else "spent"


@register.filter
def money(amount: int, currency: str) -> str:
    return billing_money(amount, currency)


@register.filter
def signed(amount: int) -> str:
    return f"{amount:+,d}"


@register.simple_tag(takes_context=True)
def image_url(context, image) -> str:
    return storage.object_url(image.storage_key, base_url=base_url(context["request"]))
