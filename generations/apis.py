"""The public generation endpoints: thin views. A request is parsed by its contract
(generations.schema's serializers), handled by the services, and its answer shaped here."""

import re
from urllib.request import parse_http_list

import pybase64
from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.apis import CreditsOutput
from billing.selectors import CreditsSummary
from generations import schema
from generations.catalog import aspect_ratios, enabled_models
from generations.models import Generation, ImageModel
from generations.selectors import generation_get_for_owner_api, generation_queue_position, images_of
from generations.services import generation_cancel, generation_submit
from generations.streams import STREAM, image_stream
from hub.http import sse
from hub.http.departure import departure_of
from hub.http.errors import InvalidRequest, NotFound
from hub.http.openapi import RATE_LIMIT_HEADERS, SHOULD_RETRY, errors
from hub.http.public_url import base_url
from hub.infra import storage
from hub.infra.timefmt import iso_z


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
        usage.update(generation.provider_usage or {})  # OpenAI's token counts, when its provider said them
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
            # Its place among the generations waiting for the model's upstreams (1: next); null
            # when it is not waiting.
            "queue_position": generation_queue_position(generation),
            # OpenAI image-response fields, so OpenAI SDK clients pointed at the hub can read it.
            "created": int(generation.created_at.timestamp()),
            "data": [{"url": image["url"]} for image in images],
            # and what OpenAI's answer says of the images (its `quality` is the tier above)
            "size": generation.size,
            "background": generation.options.get("background", "auto"),
            "output_format": generation.options.get("output_format", "png"),
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
                "options": model.options,
                "credits_per_image": model.prices.get("1K", {}),
            }

    @extend_schema(operation_id="models_list", responses={200: schema.ModelListSerializer}, auth=[])
    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": [self.OutputSerializer.data(m) for m in enabled_models()]})


class GenerationCreateApi(APIView):
    # The request's contract, by content type (generations.schema): a JSON object or a multipart form.
    input_serializers = {False: schema.GenerationJSONSerializer, True: schema.GenerationMultipartSerializer}
    OutputSerializer = GenerationOutput
    stream_kind = "image_generation"  # `stream: true`: the names of its events (generations.streams)

    @extend_schema(
        request={
            "application/json": schema.GenerationJSONSerializer,
            "multipart/form-data": schema.GenerationMultipartSerializer,
        },
        responses={
            200: schema.GenerationSerializer,
            (200, "text/event-stream"): STREAM,
            202: schema.GenerationSerializer,
            **errors(400, 401, 402, 403, 409, 429, 500),
        },
        parameters=[*schema.HEADERS, SHOULD_RETRY, *RATE_LIMIT_HEADERS],
    )
    def post(self, request: Request) -> Response:
        form = request.content_type.startswith("multipart/")
        serializer = self.input_serializers[form](data=request.data)
        serializer.is_valid(raise_exception=True)
        params = dict(serializer.validated_data)
        files, mask, response_format = params.pop("files", []), params.pop("mask"), params.pop("response_format")
        stream, partial_images = params.pop("stream"), params.pop("partial_images")
        params["is_async"] |= stream  # charged and queued; the stream waits for it
        params["partial_images"] = partial_images if stream else None  # as OpenAI: none without a stream
        root = base_url(request)
        departure = departure_of(request)  # a client that hangs up ends the wait, not the generation
        outcome = generation_submit(
            owner=request.user,
            api_key=request.auth,
            params=params,
            files=files,
            mask=mask,
            idempotency_key=_idempotency_key(request),
            max_wait=None if params["is_async"] else _preferred_wait(request),
            webhook_base_url=root,
            departure=departure,
        )
        if stream:
            return sse.response(
                image_stream(
                    owner=request.user,
                    generation=outcome.generation,
                    enqueued_after=outcome.enqueued_after,
                    kind=self.stream_kind,
                    with_partials=outcome.generation.partial_images is not None,
                    departure=departure,
                )
            )
        body = self.OutputSerializer.data(
            outcome.generation,
            root=root,
            poll_url=outcome.status == 202,
            balance=outcome.balance,
            b64_json=outcome.status == 200 and response_format == "b64_json",
        )
        return Response(body, status=outcome.status, headers=outcome.headers or None)


class ImageEditApi(GenerationCreateApi):
    """`POST /images/edits`, the OpenAI SDK's `images.edit(image=[…], prompt=…)`: the same
    generation as `reference_image` uploads, with the SDK's field names."""

    input_serializers = {False: schema.ImageEditJSONSerializer, True: schema.ImageEditSerializer}
    stream_kind = "image_edit"

    @extend_schema(
        request={"multipart/form-data": schema.ImageEditSerializer},
        responses={
            200: schema.GenerationSerializer,
            (200, "text/event-stream"): STREAM,
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
