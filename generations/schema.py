"""The generation endpoints' contract (drf-spectacular describes it for OpenAPI): the request
serializers parse every generation request, the response shapes describe the answers.

Each content type has its serializer (`form`: a multipart form's fields arrive as strings, a JSON
object keeps its types), built of fields that read their values strictly (generations.schema_fields);
the exception handler answers the first refusal (hub.http.exception_handler). Unknown fields are
ignored (OpenAI clients send extras). OpenAI's image options (generations.options) are read into one
`options` map, checked against the model's catalog row by the submit service.
"""

from collections.abc import Mapping

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.settings import api_settings

from billing.apis import CreditsSerializer
from generations.catalog import enabled_models
from generations.options import IMAGE_OPTIONS, NO_IMAGE_OPTIONS, OPTIONS
from generations.schema_fields import (
    Choice,
    Events,
    Flag,
    Identifier,
    Integer,
    Prompt,
    ResponseFormat,
    Text,
    Uploads,
    WebhookURL,
    all_text,
)

N_MAX = 4  # images per request (the playground's form offers as many)


class ModelSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="model")
    created = serializers.IntegerField()
    owned_by = serializers.CharField()
    provider = serializers.CharField()
    aspect_ratios = serializers.ListField(child=serializers.CharField())
    sizes = serializers.ListField(child=serializers.CharField())
    qualities = serializers.ListField(child=serializers.CharField())
    reference_image_limit = serializers.IntegerField()
    options = serializers.DictField(help_text="OpenAI options it accepts: name → allowed values, or true for any")
    credits_per_image = serializers.DictField(child=serializers.IntegerField(), help_text="1K price by quality")


class ModelListSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = ModelSerializer(many=True)


class _Image(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="image")
    url = serializers.URLField()
    created_at = serializers.DateTimeField()


class _InputTokensDetails(serializers.Serializer):
    text_tokens = serializers.IntegerField()
    image_tokens = serializers.IntegerField()


class _Usage(serializers.Serializer):
    credits = serializers.IntegerField(help_text="credits finally consumed (0 while unfinished)")
    credits_requested = serializers.IntegerField(help_text="charged up front: n × price")
    credits_refunded = serializers.IntegerField(required=False)
    # OpenAI's `usage`, as the provider reported it for the call that delivered the images.
    input_tokens = serializers.IntegerField(required=False, help_text="OpenAI field, when the provider reported it")
    input_tokens_details = _InputTokensDetails(required=False, help_text="OpenAI field: text and image input tokens")
    output_tokens = serializers.IntegerField(required=False, help_text="OpenAI field: the images' tokens")
    total_tokens = serializers.IntegerField(required=False, help_text="OpenAI field: input + output tokens")


class _GenerationError(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class _OpenAIDatum(serializers.Serializer):
    url = serializers.URLField(required=False)
    b64_json = serializers.CharField(required=False, help_text='with response_format="b64_json"')


class GenerationSerializer(serializers.Serializer):
    object = serializers.CharField(default="image_generation")
    id = serializers.CharField()
    status = serializers.ChoiceField(["queued", "running", "succeeded", "failed", "canceled"])
    model = serializers.CharField()
    aspect_ratio = serializers.CharField()
    quality = serializers.CharField(help_text="the output resolution tier: 1K, 2K or 4K")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    images = _Image(many=True)
    usage = _Usage()
    error = _GenerationError(allow_null=True)
    queue_position = serializers.IntegerField(
        allow_null=True,
        help_text="while queued behind others for the model's upstreams: its place in line (1: next); else null",
    )
    created = serializers.IntegerField(help_text="OpenAI field: unix seconds")
    data = _OpenAIDatum(many=True, help_text="OpenAI field: one item per stored image")
    size = serializers.CharField(help_text="OpenAI field: the size asked (auto, or WIDTHxHEIGHT)")
    background = serializers.CharField(help_text="OpenAI field: the background asked (auto by default)")
    output_format = serializers.CharField(help_text="OpenAI field: png, jpeg or webp")
    poll_url = serializers.URLField(required=False, help_text="with 202 answers")
    balance = CreditsSerializer(required=False, help_text="with a sync 200")


class _GenerationRequest(serializers.Serializer):
    # validated_data: generations.services.generation_submit's request parameters (model_id,
    # prompt, size, quality, n, is_async, webhook_url, webhook_events, options), `files` (the
    # reference uploads, counted against the model's limit before any is decoded), `mask` (an
    # upload or None) and `response_format`.
    #
    # Its fields are bound once per class and shared by its instances: DRF deep-copies a
    # serializer's fields for each instance so that a field may keep state between calls — for
    # these ~0.3 ms of CPU per request, where the parse itself costs ~0.02 ms; these keep none.

    form = False  # a multipart form (its fields are strings), or a JSON object
    file_fields: tuple[str, ...] = ("reference_image", "mask")  # refused in JSON, read in a form
    image_required = False
    default_error_messages = {"invalid": "The request body must be a JSON object"}

    stream = Flag(required=False, default=False, help_text="answer text/event-stream: OpenAI's image events")
    partial_images = Integer(
        min_value=0,
        max_value=3,
        required=False,
        default=0,
        help_text="with `stream`: partial images sent of each image as the provider makes them",
    )
    model = Text(source="model_id")
    prompt = Prompt()
    size = Text(required=False, default="auto", help_text="auto or WIDTHxHEIGHT from the catalog")
    quality = Text(required=False, default="auto", help_text="a quality of the model (the catalog's)")
    n = Integer(min_value=1, max_value=N_MAX, required=False, default=1)
    # `async` is a Python keyword: set through the class namespace, in its place among the fields.
    locals()["async"] = Flag(source="is_async", required=False, default=False, help_text="answer 202 at once")
    webhook_url = WebhookURL(
        required=False,
        max_length=2048,
        help_text="http(s) URL the hub POSTs the generation to, signed per Standard Webhooks (docs/api.md, Webhooks); "
        "a host it cannot use, or a literal address it may not reach, is a 400 with param webhook_url",
    )
    webhook_events = Events(
        required=False,
        min_length=1,
        help_text="which events to POST (default [completed]); multipart: repeated or comma-separated",
    )
    response_format = ResponseFormat(["url", "b64_json"], required=False, default="url")
    # OpenAI's image options (generations.options): validated here, offered or not per model.
    background = Choice(OPTIONS["background"], required=False, help_text="transparent needs png or webp")
    output_format = Choice(OPTIONS["output_format"], required=False, help_text="the stored images' format (png)")
    output_compression = Integer(
        min_value=0, max_value=100, required=False, default=None, help_text="0–100, with jpeg or webp"
    )
    moderation = Choice(OPTIONS["moderation"], required=False, help_text="without images (not on edits)")
    user = Identifier(required=False, max_length=256, help_text="your end user's id, passed to the provider")
    safety_identifier = Identifier(required=False, max_length=64, help_text="passed to the provider")
    input_fidelity = Choice(OPTIONS["input_fidelity"], required=False, help_text="with images (edits)")

    @classmethod
    def _fields_bound(cls):
        if "_bound_fields" not in cls.__dict__:
            cls._bound_fields = serializers.Serializer.fields.real_func(cls())
        return cls._bound_fields

    @property
    def fields(self):
        return self._fields_bound()

    @property
    def _writable_fields(self):
        return self._fields_bound().values()

    def run_validators(self, value):
        """None to run: the request's rules are its fields' and validate()'s."""

    def run_validation(self, data=empty):
        if not isinstance(data, Mapping):  # a JSON list, string, number or null
            raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [self.error_messages["invalid"]]})
        if not self.form:
            for name in self.file_fields:
                if name in data:
                    message = f"{name} is only accepted in multipart/form-data requests"
                    raise serializers.ValidationError({name: message})
        return super().run_validation(data)

    def validate(self, attrs):
        if attrs["webhook_events"] is not None and not attrs["webhook_url"]:
            raise serializers.ValidationError({"webhook_events": "webhook_events needs a webhook_url"})
        if self.form:
            uploads = {name for name, values in self.initial_data.lists() if not all_text(values)}
            unknown = uploads - set(self.file_fields)
            if unknown:
                raise serializers.ValidationError(
                    {min(unknown): f"Unexpected file field(s): {', '.join(sorted(unknown))}"}
                )
        if self.image_required and not attrs.get("files"):
            raise serializers.ValidationError({"image": "At least one image is required (multipart field 'image')"})
        masks = attrs.pop("masks", [])
        if len(masks) > 1:
            raise serializers.ValidationError({"mask": "One mask at most"})
        attrs["mask"] = masks[0] if masks else None
        attrs["options"] = _options(attrs)
        return attrs


def _options(attrs: dict) -> dict:
    """The options asked (popped from `attrs`), the mask as `true`; refused where they cannot mean
    anything, whatever the model."""
    options = {name: attrs.pop(name) for name in OPTIONS if name != "mask"}
    options = {name: value for name, value in options.items() if value not in (None, "")}
    if attrs["mask"] is not None:
        options["mask"] = True
    for name in IMAGE_OPTIONS:
        if name in options and not attrs.get("files"):
            raise serializers.ValidationError({name: f"{name} applies to the images sent (an edit)"})
    for name in NO_IMAGE_OPTIONS:
        if name in options and attrs.get("files"):
            raise serializers.ValidationError({name: f"{name} applies to generations without images"})
    output_format = options.get("output_format", "png")
    if "output_compression" in options and output_format == "png":
        raise serializers.ValidationError({"output_compression": "output_compression needs output_format jpeg or webp"})
    if options.get("background") == "transparent" and output_format == "jpeg":
        raise serializers.ValidationError({"background": "A transparent background needs output_format png or webp"})
    return options


def _mask() -> Uploads:
    return Uploads(source="masks", required=False, help_text="a PNG with alpha, the first image's size: what to change")


class GenerationJSONSerializer(_GenerationRequest):
    pass


class GenerationMultipartSerializer(_GenerationRequest):
    form = True
    reference_image = Uploads(source="files", required=False)
    mask = _mask()


class ImageEditJSONSerializer(GenerationJSONSerializer):
    # `POST /images/edits` with a JSON body: refused (its images are uploads), as the generation
    # request's would be.

    file_fields = ("image", "image[]", "mask")
    image_required = True


class ImageEditSerializer(_GenerationRequest):
    form = True
    file_fields = ("image", "image[]", "mask")
    image_required = True
    image = Uploads(source="files", also=("image[]",), help_text="also accepted as image[]")
    mask = _mask()


HEADERS = [
    OpenApiParameter(
        "Idempotency-Key",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description="Repeat the same request with the same key (24 h): the same generation, charged once",
    ),
    OpenApiParameter(
        "Prefer",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description=(
            "wait=N: wait at most N seconds (capped at the generation timeout), then answer 202 with"
            " poll_url (sync requests)"
        ),
    ),
    OpenApiParameter(
        "Preference-Applied",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200, 202],
        description="wait=N: the wait applied, when Prefer asked for one",
    ),
]


def catalog_enums(result, generator, request, public):
    """drf-spectacular postprocessing hook: the request's `model`, `size` and `quality` are enums of
    the catalog as it is when the schema is read (the catalog is data an operator edits)."""
    models = list(enabled_models())
    sizes = sorted({size for model in models for size in model.sizes})
    qualities = sorted({quality for model in models for quality in model.qualities})
    for name in ("GenerationJSONRequest", "GenerationMultipartRequest", "ImageEditRequest"):
        properties = result["components"]["schemas"][name]["properties"]
        properties["model"]["enum"] = [model.id for model in models]
        properties["size"]["enum"] = sizes
        properties["quality"]["enum"] = qualities
    return result
