"""Whether the environment routes a URL through an HTTP proxy."""

import urllib.request
from urllib.parse import urlsplit


def proxied(url: str) -> bool:
    """Whether HTTP(S)_PROXY / NO_PROXY send requests for `url` through a proxy. The SDK clients
    (boto3's, OpenAI's) honour those variables and the hub's plain urllib3 pools do not, so a
    proxied URL takes the client's path."""
    parts = urlsplit(url)
    return parts.scheme in urllib.request.getproxies_environment() and not urllib.request.proxy_bypass_environment(
        parts.hostname or ""
    )
