"""A Content-Security-Policy for the pages people sign in to: the account pages and the admin.

Scripts and styles come from the hub itself only (inline style attributes are allowed: the admin
uses a few; inline scripts are not); images also from the image store (presigned S3 or a CDN);
no plugins, no framing, forms post only to the hub. The JSON API needs none.
"""

from urllib.parse import urlsplit

from django.conf import settings

PAGE_PATH_PREFIXES = ("/account/", "/admin/")  # the pages: HTML, not the JSON API


def _image_sources() -> list[str]:
    sources = ["'self'", "data:"]
    if settings.USE_S3:
        if settings.AWS_S3_CUSTOM_DOMAIN:
            sources.append(f"https://{settings.AWS_S3_CUSTOM_DOMAIN}")
        elif settings.AWS_S3_ENDPOINT_URL:
            parts = urlsplit(settings.AWS_S3_ENDPOINT_URL)
            sources.append(f"{parts.scheme}://{parts.netloc}")
        else:
            sources.append("https://*.amazonaws.com")
    return sources


def content_security_policy() -> str:
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": _image_sources(),
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = content_security_policy()

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith(PAGE_PATH_PREFIXES):
            response.headers.setdefault("Content-Security-Policy", self.policy)
        return response
