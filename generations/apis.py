"""The public generation endpoints. Each API class carries its input and output shapes
(HackSoft's nested InputSerializer/OutputSerializer); the rules live in the services.

The shapes are small plain classes rather than DRF serializers: JSON must keep its types
(`"n": "2"` is refused) while multipart fields arrive as strings, which DRF's fields blur.
"""

from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.apis import CreditsOutput
from billing.selectors import CreditsSummary, account_for_user, credits_summary
from generations.catalog import aspect_ratios, enabled_models, model_get_enabled, reference_count_check
from generations.models import FINISHED, Generation, GenerationStatus, ImageModel
from generations.references import reference_images_read
from generations.selectors import generation_get_for_owner
from generations.services import generation_create, generation_wait
from hub import storage
from hub.errors import GenerationFailed, InvalidRequest
from hub.public_url import base_url
from hub.timefmt import iso_z

PROMPT_MAX_LENGTH = 32000
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}


class GenerationOutput:
    """A generation as the contract shows it, with OpenAI's `created`/`data` fields beside it."""

    @staticmethod
    def data(
        generation: Generation, *, root: str, poll_url: bool = False, balance: CreditsSummary | None = None
    ) -> dict:
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
        error = {"code": generation.error_code, "message": generation.error_message} if generation.error_code else None
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
            "error": error,
            # OpenAI image-response fields, so OpenAI SDK clients pointed at the hub can read it.
            "created": int(generation.created_at.timestamp()),
            "data": [{"url": image["url"]} for image in images],
        }
        if poll_url:
            body["poll_url"] = f"{root}/api/v1/generations/{generation.id}"
        if balance is not None:
            body["balance"] = CreditsOutput.data(balance)
        return body


class ModelListApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    class OutputSerializer:
        @staticmethod
        def data(model: ImageModel) -> dict:
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

    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": [self.OutputSerializer.data(m) for m in enabled_models()]})


class GenerationCreateApi(APIView):
    class InputSerializer:
        """Strict parsing of the request; JSON keeps its types, multipart fields are strings.

        Unknown fields are ignored (OpenAI clients send extras such as `response_format`).
        Reference uploads are counted against the model's limit before any is decoded.
        """

        def __init__(self, request: Request):
            self.is_multipart = request.content_type.startswith("multipart/")
            self.data = request.data
            self.files = request.FILES if self.is_multipart else None

        def validated(self) -> dict:
            if not hasattr(self.data, "get"):
                raise InvalidRequest("The request body must be a JSON object")
            if not self.is_multipart and "reference_image" in self.data:
                raise InvalidRequest("reference_image is only accepted in multipart/form-data requests")
            params = {
                "model_id": self._string("model", required=True),
                "prompt": self._prompt(),
                "size": self._string("size", default="auto"),
                "quality": self._string("quality", default="auto"),
                "n": self._n(),
                "is_async": self._bool("async"),
            }
            files = self._reference_files()
            reference_count_check(model_get_enabled(params["model_id"]), len(files))
            return {**params, "references": reference_images_read(files)}

        def _reference_files(self) -> list:
            if not self.is_multipart:
                return []
            files = self.files.getlist("reference_image")
            if len(self.data.getlist("reference_image")) != len(files):
                raise InvalidRequest("reference_image must be a file upload (curl: -F 'reference_image=@./file.png')")
            unknown = set(self.files) - {"reference_image"}
            if unknown:
                raise InvalidRequest(f"Unexpected file field(s): {', '.join(sorted(unknown))}")
            return files

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

    OutputSerializer = GenerationOutput

    def post(self, request: Request) -> Response:
        params = self.InputSerializer(request).validated()
        generation = generation_create(owner=request.user, api_key=request.auth, **params)
        root = base_url(request)
        if params["is_async"]:
            return Response(self.OutputSerializer.data(generation, root=root, poll_url=True), status=202)
        generation = generation_wait(generation=generation)
        if generation.status not in FINISHED:  # the wait itself failed: hand over the poll_url
            return Response(self.OutputSerializer.data(generation, root=root, poll_url=True), status=202)
        if generation.status == GenerationStatus.FAILED:
            raise GenerationFailed(generation.error_message or None, generation_id=generation.id)
        balance = credits_summary(account=account_for_user(user_id=generation.owner_id))
        return Response(self.OutputSerializer.data(generation, root=root, balance=balance))


class GenerationRetrieveApi(APIView):
    OutputSerializer = GenerationOutput

    def get(self, request: Request, generation_id: str) -> Response:
        generation = generation_get_for_owner(owner=request.user, generation_id=generation_id)
        return Response(self.OutputSerializer.data(generation, root=base_url(request)))
