"""Input parsing and output shaping for the public generation endpoints."""

from django.conf import settings

from billing.selectors import account_for_user, credits_summary
from generations.catalog import aspect_ratios
from generations.models import Generation, ImageModel
from hub.errors import InvalidRequest
from hub.timefmt import iso_z
from workers import storage

PROMPT_MAX_LENGTH = 32000
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}


class GenerationInput:
    """Strict parsing of the request body; JSON keeps its types, multipart fields are strings.

    Unknown fields are ignored (OpenAI clients send extras such as `response_format`).
    """

    def __init__(self, data, *, is_multipart: bool):
        self.data = data
        self.is_multipart = is_multipart

    def parse(self) -> dict:
        if not hasattr(self.data, "get"):
            raise InvalidRequest("The request body must be a JSON object")
        if not self.is_multipart and "reference_image" in self.data:
            raise InvalidRequest("reference_image is only accepted in multipart/form-data requests")
        return {
            "model_id": self._string("model", required=True),
            "prompt": self._prompt(),
            "size": self._string("size", default="auto"),
            "quality": self._string("quality", default="auto"),
            "n": self._n(),
            "is_async": self._bool("async"),
        }

    def _string(self, name: str, *, required: bool = False, default: str = "") -> str:
        value = self.data.get(name)
        if value is None:
            if required:
                raise InvalidRequest(f"'{name}' is required")
            return default
        if not isinstance(value, str):
            raise InvalidRequest(f"'{name}' must be a string")
        return value.strip()

    def _prompt(self) -> str:
        prompt = self.data.get("prompt")
        if prompt is None:
            raise InvalidRequest("'prompt' is required")
        if not isinstance(prompt, str):
            raise InvalidRequest("'prompt' must be a string")
        if not prompt.strip():
            raise InvalidRequest("'prompt' must not be empty")
        if len(prompt) > PROMPT_MAX_LENGTH:
            raise InvalidRequest(f"'prompt' is longer than {PROMPT_MAX_LENGTH} characters")
        return prompt

    def _n(self) -> int:
        value = self.data.get("n", 1)
        if self.is_multipart and isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest("'n' must be an integer between 1 and 4")
        if not 1 <= value <= 4:
            raise InvalidRequest("'n' must be between 1 and 4")
        return value

    def _bool(self, name: str) -> bool:
        value = self.data.get(name, False)
        if isinstance(value, bool):
            return value
        if self.is_multipart and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise InvalidRequest(f"'{name}' must be a boolean")


def model_output(model: ImageModel) -> dict:
    return {
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": model.owned_by,
        "provider": model.provider,
        "aspect_ratios": aspect_ratios(model),
        "sizes": model.sizes,
        "qualities": model.qualities,
        "reference_image_limit": model.reference_image_limit,
        "credits_per_image": model.prices.get("1K", {}),
    }


def base_url(request) -> str:
    return settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")


def generation_output(generation: Generation, *, request, poll_url: bool = False, balance: bool = False) -> dict:
    root = base_url(request)
    images = [
        {
            "id": image.id,
            "object": "image",
            "url": storage.object_url(image.storage_key, base_url=root),
            "created_at": iso_z(image.created_at),
        }
        for image in generation.images.all()
    ]
    usage = {"credits": generation.credits_consumed, "credits_requested": generation.credits_requested}
    if generation.credits_refunded:
        usage["credits_refunded"] = generation.credits_refunded
    body = {
        "object": "image_generation",
        "id": generation.id,
        "status": generation.status,
        "model": generation.model_id,
        "aspect_ratio": generation.aspect_ratio,
        "quality": generation.tier,
        "created_at": iso_z(generation.created_at),
        "finished_at": iso_z(generation.finished_at),
        "images": images,
        "usage": usage,
        "error": {"code": generation.error_code, "message": generation.error_message} if generation.error_code else None,
        # OpenAI image-response fields, so OpenAI SDK clients pointed at the hub can read it.
        "created": int(generation.created_at.timestamp()),
        "data": [{"url": image["url"]} for image in images],
    }
    if poll_url:
        body["poll_url"] = f"{root}/api/v1/generations/{generation.id}"
    if balance:
        body["balance"] = credits_summary(account=account_for_user(user_id=generation.owner_id))
    return body
