"""A Content-Security-Policy for the pages people sign in to: the account pages and the admin.

Scripts and styles come from the hub itself only (inline style attributes are allowed: the admin
uses a few; inline scripts are not); images also from the image store (presigned S3 or a CDN);
no plugins, no framing, forms post only to the hub — whose Buy form answers with a redirect to
Stripe's Checkout page, which browsers check against form-action too. The JSON API needs none.
"""

from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings

from hub.infra import backends

PAGE_PATH_PREFIXES = ("/account/", "/admin/")  # the pages: HTML, not the JSON API
STRIPE_CHECKOUT_ORIGIN = "https://checkout.stripe.com"


def _image_sources() -> list[str]:
    sources = ["'self'", "data:"]
    if backends.s3():
        if settings.AWS_S3_CUSTOM_DOMAIN:
            sources.append(f"https://{settings.AWS_S3_CUSTOM_DOMAIN}")
        elif settings.AWS_S3_ENDPOINT_URL:
            parts = urlsplit(settings.AWS_S3_ENDPOINT_URL)
            sources.append(f"{parts.scheme}://{parts.netloc}")
        else:
            sources.append("https://*.amazonaws.com")
    return sources


def _form_targets() -> list[str]:
    """The hub, and Stripe's Checkout pages when the hub sells credits (on STRIPE_API_BASE's
    server too when set: stripe-mock or the tests' fake answer with their own pages)."""
    targets = ["'self'"]
    if settings.STRIPE_SECRET_KEY:
        targets.append(STRIPE_CHECKOUT_ORIGIN)
        if settings.STRIPE_API_BASE:
            parts = urlsplit(settings.STRIPE_API_BASE)
            targets.append(f"{parts.scheme}://{parts.netloc}")
    return targets


def content_security_policy() -> str:
    """Read from the settings on each call (a few lookups), joined once per set of sources."""
    return _policy(tuple(_image_sources()), tuple(_form_targets()))


@lru_cache(maxsize=8)
def _policy(image_sources: tuple[str, ...], form_targets: tuple[str, ...]) -> str:
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": image_sources,
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": form_targets,
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith(PAGE_PATH_PREFIXES):
            response.headers.setdefault("Content-Security-Policy", content_security_policy())
        return response
