"""The OpenAPI description of the generation endpoints' shapes (drf-spectacular). The shapes
themselves are the small classes in apis.py; these serializers only describe them."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from billing.apis import CreditsSerializer
from generations.catalog import enabled_models


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
    credits_per_image = serializers.DictField(child=serializers.IntegerField(), help_text="1K price by quality")


class ModelListSerializer(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = ModelSerializer(many=True)


class _Image(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="image")
    url = serializers.URLField()
    created_at = serializers.DateTimeField()


class _Usage(serializers.Serializer):
    credits = serializers.IntegerField(help_text="credits finally consumed (0 while unfinished)")
    credits_requested = serializers.IntegerField(help_text="charged up front: n × price")
    credits_refunded = serializers.IntegerField(required=False)


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
    created = serializers.IntegerField(help_text="OpenAI field: unix seconds")
    data = _OpenAIDatum(many=True, help_text="OpenAI field: one item per stored image")
    poll_url = serializers.URLField(required=False, help_text="with 202 answers")
    balance = CreditsSerializer(required=False, help_text="with a sync 200")


class _GenerationFields(serializers.Serializer):
    model = serializers.CharField()
    prompt = serializers.CharField(max_length=32000)
    size = serializers.CharField(required=False, default="auto", help_text="auto or WIDTHxHEIGHT from the catalog")
    quality = serializers.ChoiceField(["auto", "low", "medium", "high"], required=False, default="auto")
    n = serializers.IntegerField(min_value=1, max_value=4, required=False, default=1)
    response_format = serializers.ChoiceField(["url", "b64_json"], required=False, default="url")
    webhook_url = serializers.URLField(
        required=False,
        max_length=2048,
        help_text="http(s) URL the hub POSTs the generation to, signed per Standard Webhooks (docs/api.md, Webhooks); "
        "a host it cannot use, or a literal address it may not reach, is a 400 with param webhook_url",
    )
    webhook_events = serializers.ListField(
        child=serializers.ChoiceField(["completed", "started"]),
        required=False,
        min_length=1,
        help_text="which events to POST (default [completed]); multipart: repeated or comma-separated",
    )


# `async` is a Python keyword, so the field is declared through the class namespace.
_ASYNC = {"async": serializers.BooleanField(required=False, default=False, help_text="answer 202 at once")}
GenerationJSONSerializer = type("GenerationJSONSerializer", (_GenerationFields,), {**_ASYNC, "__module__": __name__})
GenerationMultipartSerializer = type(
    "GenerationMultipartSerializer",
    (_GenerationFields,),
    {
        **_ASYNC,
        "reference_image": serializers.ListField(child=serializers.FileField(), required=False),
        "__module__": __name__,
    },
)
ImageEditSerializer = type(
    "ImageEditSerializer",
    (_GenerationFields,),
    {
        **_ASYNC,
        "image": serializers.ListField(child=serializers.FileField(), help_text="also accepted as image[]"),
        "__module__": __name__,
    },
)


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
    """drf-spectacular postprocessing hook: the request's `model` and `size` are enums of the
    catalog as it is when the schema is read (the catalog is data an operator edits)."""
    models = list(enabled_models())
    sizes = sorted({size for model in models for size in model.sizes})
    for name in ("GenerationJSONRequest", "GenerationMultipartRequest", "ImageEditRequest"):
        properties = result["components"]["schemas"][name]["properties"]
        properties["model"]["enum"] = [model.id for model in models]
        properties["size"]["enum"] = sizes
    return result
