from django.conf import settings


def base_url(request) -> str:
    """The hub's public origin for absolute URLs (poll_url, local image URLs, quick-start
    commands): PUBLIC_BASE_URL when set — behind a proxy the request's own host may be internal."""
    return settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")
