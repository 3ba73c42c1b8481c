"""The public generation endpoints. Each API class carries its input and output shapes
(HackSoft's nested InputSerializer/OutputSerializer); the rules live in the services.

The shapes are small plain classes rather than DRF serializers: JSON must keep its types
(`"n": "2"` is refused) while multipart fields arrive as strings, which DRF's fields blur.
"""

import re
import time
from urllib.request import parse_http_list

import pybase64
from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.apis import CreditsOutput
from billing.selectors import CreditsSummary, credits_summary_for_user, credits_summary_of
from generations import schema
from generations.catalog import aspect_ratios, enabled_models
from generations.models import FINISHED, Generation, GenerationStatus, ImageModel, WebhookEvent
from generations.references import reference_images_read
from generations.selectors import generation_get_for_owner_api, images_of
from generations.services import generation_cancel, generation_create, generation_precheck, generation_wait
from generations.webhook_urls import UnusableWebhookURL, webhook_url_check
from hub import storage
from hub.errors import GenerationCanceled, GenerationFailed, InvalidRequest, NotFound
from hub.openapi import RATE_LIMIT_HEADERS, SHOULD_RETRY, errors
from hub.public_url import base_url
from hub.timefmt import iso_z

PROMPT_MAX_LENGTH = 32000
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}


def _text(value, name: str) -> str:
    """A string the database can store: PostgreSQL refuses NUL, and a lone surrogate (which
    JSON's `\\ud800` escape produces) cannot be encoded as UTF-8 at all."""
    if not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be a string", param=name)
    if "\x00" in value or not value.isprintable() and any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise InvalidRequest(f"'{name}' contains a NUL character or an unpaired surrogate", param=name)
    return value


class GenerationOutput:
    """A generation as the contract shows it, with OpenAI's `created`/`data` fields beside it."""

    @staticmethod
    def data(
        generation: Generation,
        *,
        root: str,
        poll_url: bool = False,
        balance: CreditsSummary | None = None,
        b64_json: bool = False,
    ) -> dict:
        stored = images_of(generation)
        images = [
            {
                "id": image.id,
                "object": "image",
                "url": storage.object_url(image.storage_key, base_url=root),
                "created_at": iso_z(image.created_at),
            }
            for image in stored
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
        if b64_json:  # OpenAI's response_format="b64_json": the image bytes, read from storage
            body["data"] = [
                {"b64_json": pybase64.b64encode(storage.object_read(image.storage_key)).decode()} for image in stored
            ]
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

    @extend_schema(operation_id="models_list", responses={200: schema.ModelListSerializer}, auth=[])
    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": [self.OutputSerializer.data(m) for m in enabled_models()]})


class GenerationCreateApi(APIView):
    class InputSerializer:
        """Strict parsing of the request; JSON keeps its types, multipart fields are strings.

        Unknown fields are ignored (OpenAI clients send extras such as `user`). Reference
        uploads are counted against the model's limit before any is decoded.
        """

        FILE_FIELDS: tuple[str, ...] = ("reference_image",)
        IMAGE_REQUIRED = False

        def __init__(self, request: Request):
            self.is_multipart = request.content_type.startswith("multipart/")
            self.data = request.data
            self.files = request.FILES if self.is_multipart else None

        def validated(self) -> dict:
            if not hasattr(self.data, "get"):
                raise InvalidRequest("The request body must be a JSON object")
            for name in self.FILE_FIELDS:
                if not self.is_multipart and name in self.data:
                    raise InvalidRequest(f"{name} is only accepted in multipart/form-data requests", param=name)
            if "mask" in self.data or (self.files and "mask" in self.files):
                raise InvalidRequest("mask is not supported: the whole image is edited", param="mask")
            if self._optional_bool("stream"):
                raise InvalidRequest(
                    "stream is not supported: omit it for a sync answer, or send async=true and poll poll_url",
                    param="stream",
                )
            params = {
                "model_id": self._string("model", required=True),
                "prompt": self._prompt(),
                "size": self._string("size", default="auto"),
                "quality": self._string("quality", default="auto"),
                "n": self._n(),
                "is_async": self._bool("async"),
                **self._webhook(),
            }
            files = self._reference_files()
            if self.IMAGE_REQUIRED and not files:
                raise InvalidRequest("At least one image is required (multipart field 'image')", param="image")
            return {**params, "files": files}

        def response_format(self) -> str:
            value = self.data.get("response_format") or "url"
            if value not in ("url", "b64_json"):
                raise InvalidRequest("response_format must be 'url' or 'b64_json'", param="response_format")
            return value

        def _reference_files(self) -> list:
            if not self.is_multipart:
                return []
            files = [file for name in self.FILE_FIELDS for file in self.files.getlist(name)]
            texts = sum(len(self.data.getlist(name)) for name in self.FILE_FIELDS)
            if texts != len(files):
                name = self.FILE_FIELDS[0]
                raise InvalidRequest(f"{name} must be a file upload (curl: -F '{name}=@./file.png')", param=name)
            unknown = set(self.files) - set(self.FILE_FIELDS)
            if unknown:
                raise InvalidRequest(f"Unexpected file field(s): {', '.join(sorted(unknown))}", param=min(unknown))
            return files

        def _string(self, name: str, *, required: bool = False, default: str = "") -> str:
            value = self.data.get(name)
            if value is None:
                if required:
                    raise InvalidRequest(f"'{name}' is required", param=name)
                return default
            return _text(value, name).strip()

        def _prompt(self) -> str:
            prompt = self.data.get("prompt")
            if prompt is None:
                raise InvalidRequest("'prompt' is required", param="prompt")
            prompt = _text(prompt, "prompt")
            if not prompt.strip():
                raise InvalidRequest("'prompt' must not be empty", param="prompt")
            if len(prompt) > PROMPT_MAX_LENGTH:
                raise InvalidRequest(f"'prompt' is longer than {PROMPT_MAX_LENGTH} characters", param="prompt")
            return prompt

        def _n(self) -> int:
            value = self.data.get("n", 1)
            if self.is_multipart and isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,9}", value.strip()):
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidRequest("'n' must be an integer between 1 and 4", param="n")
            if not 1 <= value <= 4:
                raise InvalidRequest("'n' must be between 1 and 4", param="n")
            return value

        def _bool(self, name: str) -> bool:
            value = self.data.get(name, False)
            if isinstance(value, bool):
                return value
            if self.is_multipart and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise InvalidRequest(f"'{name}' must be a boolean", param=name)

        def _webhook(self) -> dict:
            """`webhook_url` and `webhook_events`. The URL must be usable as written and, when its
            host is a literal address, an address webhooks may reach (generations.webhook_urls);
            where a host name resolves is checked by every delivery attempt, on the address it
            connects to (workers.webhooks) — a check now would prove nothing about delivery time."""
            url = self._string("webhook_url")
            events = self._webhook_events()
            if not url:
                if events is not None:
                    raise InvalidRequest("webhook_events needs a webhook_url", param="webhook_events")
                return {}
            try:
                webhook_url_check(url)
            except UnusableWebhookURL as exc:
                raise InvalidRequest(str(exc), param="webhook_url") from exc
            return {"webhook_url": url, "webhook_events": events}

        def _webhook_events(self) -> list[str] | None:
            """A JSON list of event names; in multipart, repeated fields or one comma-separated."""
            if "webhook_events" not in self.data:
                return None
            if self.is_multipart:
                value = [event.strip() for item in self.data.getlist("webhook_events") for event in item.split(",")]
            else:
                value = self.data["webhook_events"]
            choices = WebhookEvent.values
            if not isinstance(value, list) or not value or not all(isinstance(event, str) for event in value):
                raise InvalidRequest(
                    f"webhook_events must be a non-empty list of: {', '.join(choices)}", param="webhook_events"
                )
            unknown = sorted({event for event in value if event not in choices})
            if unknown:
                raise InvalidRequest(
                    f"Unknown webhook event(s) {', '.join(map(repr, unknown))[:200]}; known: {', '.join(choices)}",
                    param="webhook_events",
                )
            return sorted(set(value))

        def _optional_bool(self, name: str) -> bool:
            return name in self.data and self._bool(name)

    OutputSerializer = GenerationOutput

    @extend_schema(
        request={
            "application/json": schema.GenerationJSONSerializer,
            "multipart/form-data": schema.GenerationMultipartSerializer,
        },
        responses={
            200: schema.GenerationSerializer,
            202: schema.GenerationSerializer,
            **errors(400, 401, 402, 403, 409, 429, 500),
        },
        parameters=[*schema.HEADERS, SHOULD_RETRY, *RATE_LIMIT_HEADERS],
    )
    def post(self, request: Request) -> Response:
        started = time.monotonic()  # before the generation is enqueued: generation_wait
        shape = self.InputSerializer(request)
        params, response_format = shape.validated(), shape.response_format()
        files, idempotency_key = params.pop("files"), _idempotency_key(request)
        priced = {name: params[name] for name in ("model_id", "size", "quality", "n")}
        account = generation_precheck(
            owner=request.user,
            api_key=request.auth,
            reference_count=len(files),
            idempotency_key=idempotency_key,
            **priced,
        )
        root = base_url(request)
        generation = generation_create(
            owner=request.user,
            api_key=request.auth,
            idempotency_key=idempotency_key,
            references=reference_images_read(files),
            webhook_base_url=root,
            account=account,
            **params,
        )
        if params["is_async"]:
            return Response(self.OutputSerializer.data(generation, root=root, poll_url=True), status=202)
        max_wait = _preferred_wait(request)
        generation = generation_wait(generation=generation, max_wait=max_wait, enqueued_after=started)
        headers = {"Preference-Applied": f"wait={_seconds_text(max_wait)}"} if max_wait is not None else None
        if generation.status not in FINISHED:  # Prefer: wait ran out, or the wait itself failed
            body = self.OutputSerializer.data(generation, root=root, poll_url=True)
            return Response(body, status=202, headers=headers)
        if generation.status == GenerationStatus.FAILED:
            raise GenerationFailed(generation.error_message or None, generation_id=generation.id)
        if generation.status == GenerationStatus.CANCELED:
            raise GenerationCanceled(generation_id=generation.id)
        # Read with the finished row by the wait; a row it re-read after a timeout has none.
        balance = credits_summary_of(generation) or credits_summary_for_user(user_id=generation.owner_id)
        body = self.OutputSerializer.data(
            generation, root=root, balance=balance, b64_json=response_format == "b64_json"
        )
        return Response(body, headers=headers)


class ImageEditApi(GenerationCreateApi):
    """`POST /images/edits`, the OpenAI SDK's `images.edit(image=[…], prompt=…)`: the same
    generation as `reference_image` uploads, with the SDK's field names."""

    class InputSerializer(GenerationCreateApi.InputSerializer):
        FILE_FIELDS = ("image", "image[]")
        IMAGE_REQUIRED = True

    @extend_schema(
        request={"multipart/form-data": schema.ImageEditSerializer},
        responses={
            200: schema.GenerationSerializer,
            202: schema.GenerationSerializer,
            **errors(400, 401, 402, 403, 409, 429, 500),
        },
        parameters=[*schema.HEADERS, SHOULD_RETRY, *RATE_LIMIT_HEADERS],
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def _preferred_wait(request: Request) -> float | None:
    """`Prefer: wait=N` (RFC 7240, Replicate's convention): wait at most N seconds.

    RFC 7240: preferences are comma-separated, in one or several Prefer headers (joined by the
    server), their names case-insensitive, `=` possibly spaced, a value possibly quoted; only a
    preference's first instance counts, and one that cannot be read is ignored (a negative,
    non-numeric or exponent value: no wait preference at all). The wait is capped at the
    generation timeout, the longest the hub waits anyway, and rounded to milliseconds: what
    Preference-Applied then names is the wait applied.
    """
    for preference in parse_http_list(request.headers.get("Prefer", "")):
        name, _, value = preference.partition(";")[0].partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if not _SECONDS.fullmatch(value):
            return None
        return round(min(float(value), settings.GENERATION_TIMEOUT_SECONDS), 3)
    return None


def _seconds_text(seconds: float) -> str:
    """`5`, `0.5`: never `1e+30` (_preferred_wait caps and rounds the wait)."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise InvalidRequest("Idempotency-Key must be 1 to 255 printable characters", param="Idempotency-Key")
    return key


class GenerationCancelApi(APIView):
    OutputSerializer = GenerationOutput

    @extend_schema(
        request=None, responses={200: schema.GenerationSerializer, **errors(401, 404)}, parameters=[SHOULD_RETRY]
    )
    def post(self, request: Request, generation_id: str) -> Response:
        generation = generation_cancel(owner=request.user, generation_id=generation_id)
        return Response(self.OutputSerializer.data(generation, root=base_url(request)))


class ModelRetrieveApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    OutputSerializer = ModelListApi.OutputSerializer

    @extend_schema(responses={200: schema.ModelSerializer, **errors(404)}, auth=[])
    def get(self, request: Request, model_id: str) -> Response:
        model = enabled_models().filter(pk=model_id).first()
        if model is None:
            raise NotFound(f"Model '{model_id[:64]}' not found")
        return Response(self.OutputSerializer.data(model))


class GenerationRetrieveApi(APIView):
    OutputSerializer = GenerationOutput

    @extend_schema(responses={200: schema.GenerationSerializer, **errors(401, 404)}, parameters=[SHOULD_RETRY])
    def get(self, request: Request, generation_id: str) -> Response:
        generation = generation_get_for_owner_api(owner=request.user, generation_id=generation_id)
        return Response(self.OutputSerializer.data(generation, root=base_url(request)))
