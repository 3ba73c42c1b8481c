"""The one interface every image provider adapter implements."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from upstreams.costs import Usage


@dataclass(frozen=True)
class PartialImage:
    """A provider's partial image, as it streamed it: base64 (relayed as is, never decoded here)."""

    image_index: int  # among the call's n images
    partial_image_index: int
    b64_json: str


@dataclass(frozen=True)
class ProviderRequest:
    model: str  # the provider's own model id (catalog `upstream_model`)
    prompt: str
    size: str  # "auto" or "WxH"
    quality: str  # "auto" | "low" | "medium" | "high"
    n: int
    deadline: float  # time.monotonic() value by which the call must have returned
    references: list[bytes] = field(default_factory=list)  # validated, re-encoded PNG bytes
    # OpenAI's image options asked (generations.options: background, output_format, …), without
    # the mask, which is `mask`: validated, re-encoded RGBA PNG bytes, the first reference's size.
    options: dict = field(default_factory=dict)
    mask: bytes | None = None
    # A streamed generation's: ask the provider for this many partial images of each image, and
    # hand each to `on_partial` as it comes (the worker relays it to the client's stream).
    partial_images: int = 0
    on_partial: Callable[[PartialImage], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Generated:
    """A call's answer: its images, and the tokens the provider said it used (None: not said)."""

    images: list[bytes]
    usage: Usage | None = None


class ProviderError(Exception):
    """A failed provider call.

    `permanent` errors (the request itself is refused: bad prompt, policy) are never retried;
    temporary ones (429, 5xx, network) may be. `user_message` is safe to show to the user.
    `kind` labels the provider-errors metric: timeout, unavailable, rate_limited, auth,
    not_configured, malformed, download, rejected (a permanent refusal) or failed.
    `retry_after`: the seconds a rate-limited (or unavailable) provider asked to wait, if it said.
    """

    def __init__(
        self, user_message: str, *, permanent: bool, detail: str = "", kind: str = "", retry_after: float | None = None
    ):
        super().__init__(user_message)
        self.user_message = user_message
        self.permanent = permanent
        self.detail = detail  # for operator logs; never contains credentials
        self.kind = kind or ("rejected" if permanent else "failed")
        self.retry_after = retry_after


class Provider(Protocol):
    def generate(self, request: ProviderRequest) -> Generated:
        """Up to `request.n` encoded images (and the call's usage), or raise ProviderError."""
