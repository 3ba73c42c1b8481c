"""The generation endpoints' contract (drf-spectacular describes it for OpenAPI): the request
serializers parse every generation request, the response shapes describe the answers.

JSON keeps its types (`"n": "2"` is refused, which DRF's IntegerField would take) while a
multipart form's fields arrive as strings, so each content type has its serializer (`form`), and
the fields here read their values strictly: a refusal names its field and says what was wrong, and
the exception handler answers the first (hub.http.exception_handler). Unknown fields are ignored
(OpenAI clients send extras). OpenAI's image options (generations.options) are read into one
`options` map, checked against the model's catalog row by the submit service.
"""

import re
from collections.abc import Mapping

from django.core.files.uploadedfile import UploadedFile
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.settings import api_settings

from billing.apis import CreditsSerializer
from generations.catalog import enabled_models
from generations.models import WebhookEvent
from generations.options import IMAGE_OPTIONS, NO_IMAGE_OPTIONS, OPTIONS
from generations.webhook_urls import UnusableWebhookURL, webhook_url_check


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
    size = serializers.CharField(help_text="OpenAI field: the size asked (auto, or WIDTHxHEIGHT)")
    background = serializers.CharField(help_text="OpenAI field: the background asked (auto by default)")
    output_format = serializers.CharField(help_text="OpenAI field: png, jpeg or webp")
    poll_url = serializers.URLField(required=False, help_text="with 202 answers")
    balance = CreditsSerializer(required=False, help_text="with a sync 200")


PROMPT_MAX_LENGTH = 32000
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}
_INTEGER = re.compile(r"-?[0-9]{1,9}")


def _refuse(message: str):
    raise serializers.ValidationError(message)


class _Text(serializers.CharField):
    """A string as sent: another JSON type is refused (DRF's CharField would turn 5 into "5"), and
    so is what the database cannot store — PostgreSQL refuses NUL, and a lone surrogate (JSON's
    `\\ud800` escape) cannot be encoded as UTF-8. A JSON null counts as absent. Surrounding
    spaces are stripped unless `strip=False`. (`allow_blank` and `max_length` describe the field
    for OpenAPI; the checks are these fields' own, with their own messages.)"""

    def __init__(self, *, strip: bool = True, **kwargs):
        super().__init__(trim_whitespace=strip, **kwargs)

    def get_value(self, data):
        value = data.get(self.field_name)
        return empty if value is None else value

    def run_validation(self, data=empty):
        if data is empty:
            if self.required:
                _refuse(f"'{self.field_name}' is required")
            return "" if self.default is empty else self.default
        return self.to_internal_value(data)

    def to_internal_value(self, data):
        name = self.field_name
        if not isinstance(data, str):
            _refuse(f"'{name}' must be a string")
        if "\x00" in data or not data.isprintable() and any(0xD800 <= ord(c) <= 0xDFFF for c in data):
            _refuse(f"'{name}' contains a NUL character or an unpaired surrogate")
        return data.strip() if self.trim_whitespace else data


class _Prompt(_Text):
    def __init__(self, **kwargs):
        super().__init__(strip=False, max_length=PROMPT_MAX_LENGTH, **kwargs)

    def to_internal_value(self, data):
        prompt = super().to_internal_value(data)
        if not prompt.strip():
            _refuse("'prompt' must not be empty")
        if len(prompt) > PROMPT_MAX_LENGTH:
            _refuse(f"'prompt' is longer than {PROMPT_MAX_LENGTH} characters")
        return prompt


class _WebhookURL(_Text, serializers.URLField):
    """Usable as written and, when its host is a literal address, an address webhooks may reach
    (generations.webhook_urls); where a host name resolves is checked by every delivery attempt,
    on the address it connects to (workers.webhooks) — a check now would prove nothing about
    delivery time."""

    def to_internal_value(self, data):
        url = super().to_internal_value(data)
        if url:
            try:
                webhook_url_check(url)
            except UnusableWebhookURL as exc:
                _refuse(str(exc))
        return url


class _Integer(serializers.IntegerField):
    """An integer within its bounds: a JSON number that is an integer (not true, not "2"), or a
    form's digits."""

    def get_value(self, data):
        return data.get(self.field_name, empty)

    def run_validation(self, data=empty):
        if data is empty:
            return self.default
        if self.parent.form and isinstance(data, str) and _INTEGER.fullmatch(data.strip()):
            data = int(data)
        if isinstance(data, bool) or not isinstance(data, int):
            _refuse(f"'{self.field_name}' must be an integer between {self.min_value} and {self.max_value}")
        if not self.min_value <= data <= self.max_value:
            _refuse(f"'{self.field_name}' must be between {self.min_value} and {self.max_value}")
        return data


class _Choice(serializers.ChoiceField):
    """One of the option's values, as a string (a JSON null counts as absent)."""

    def get_value(self, data):
        value = data.get(self.field_name)
        return empty if value is None else value

    def run_validation(self, data=empty):
        if data is empty:
            return None
        if not isinstance(data, str) or data not in self.choices:
            _refuse(f"'{self.field_name}' must be one of: {', '.join(self.choices)}")
        return data


class _Identifier(_Text):
    """An end user's id passed on to the provider: at most `max_length` characters."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > self.max_length:
            _refuse(f"'{self.field_name}' is longer than {self.max_length} characters")
        return value


class _Flag(serializers.BooleanField):
    """JSON true or false; in a form, true/1/yes or false/0/no/empty, in any case."""

    def get_value(self, data):
        return data.get(self.field_name, empty)

    def run_validation(self, data=empty):
        if data is empty:
            return self.default
        if isinstance(data, bool):
            return data
        if self.parent.form and isinstance(data, str):
            word = data.strip().lower()
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
        _refuse(f"'{self.field_name}' must be a boolean")


class _Events(serializers.ListField):
    """A JSON list of webhook event names; in a form, repeated fields or one comma-separated."""

    child = serializers.ChoiceField(WebhookEvent.values)

    def get_value(self, data):
        if self.field_name not in data:
            return empty
        if not self.parent.form:
            return data[self.field_name]
        items = data.getlist(self.field_name)
        return [event.strip() for item in items for event in item.split(",")] if _all_text(items) else items

    def run_validation(self, data=empty):
        if data is empty:
            return None
        choices = WebhookEvent.values
        if not isinstance(data, list) or not data or not _all_text(data):
            _refuse(f"webhook_events must be a non-empty list of: {', '.join(choices)}")
        unknown = sorted({event for event in data if event not in choices})
        if unknown:
            _refuse(f"Unknown webhook event(s) {', '.join(map(repr, unknown))[:200]}; known: {', '.join(choices)}")
        return sorted(set(data))


def _all_text(items) -> bool:
    return all(isinstance(item, str) for item in items)


class _Uploads(serializers.ListField):
    """A form's file uploads under the field's name (and `also`): never text."""

    child = serializers.FileField()

    def __init__(self, *, also: tuple[str, ...] = (), **kwargs):
        self.names: tuple[str, ...] = ()
        self.also = also
        super().__init__(**kwargs)

    def bind(self, field_name, parent):
        super().bind(field_name, parent)
        self.names = (field_name, *self.also)

    def get_value(self, data):
        return [value for name in self.names for value in data.getlist(name)]

    def run_validation(self, data=empty):
        if not all(isinstance(value, UploadedFile) for value in data):
            name = self.field_name
            _refuse(f"{name} must be a file upload (curl: -F '{name}=@./file.png')")
        return data


class _ResponseFormat(serializers.ChoiceField):
    def get_value(self, data):
        return data.get(self.field_name) or "url"

    def run_validation(self, data=empty):
        if not isinstance(data, str) or data not in self.choices:
            _refuse("response_format must be 'url' or 'b64_json'")
        return data


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

    stream = _Flag(required=False, default=False, help_text="answer text/event-stream: OpenAI's image events")
    partial_images = _Integer(min_value=0, max_value=3, required=False, default=0, help_text="none sent yet")
    model = _Text(source="model_id")
    prompt = _Prompt()
    size = _Text(required=False, default="auto", help_text="auto or WIDTHxHEIGHT from the catalog")
    quality = _Text(required=False, default="auto", help_text="a quality of the model (the catalog's)")
    n = _Integer(min_value=1, max_value=4, required=False, default=1)
    # `async` is a Python keyword: set through the class namespace, in its place among the fields.
    locals()["async"] = _Flag(source="is_async", required=False, default=False, help_text="answer 202 at once")
    webhook_url = _WebhookURL(
        required=False,
        max_length=2048,
        help_text="http(s) URL the hub POSTs the generation to, signed per Standard Webhooks (docs/api.md, Webhooks); "
        "a host it cannot use, or a literal address it may not reach, is a 400 with param webhook_url",
    )
    webhook_events = _Events(
        required=False,
        min_length=1,
        help_text="which events to POST (default [completed]); multipart: repeated or comma-separated",
    )
    response_format = _ResponseFormat(["url", "b64_json"], required=False, default="url")
    # OpenAI's image options (generations.options): validated here, offered or not per model.
    background = _Choice(OPTIONS["background"], required=False, help_text="transparent needs png or webp")
    output_format = _Choice(OPTIONS["output_format"], required=False, help_text="the stored images' format (png)")
    output_compression = _Integer(
        min_value=0, max_value=100, required=False, default=None, help_text="0–100, with jpeg or webp"
    )
    moderation = _Choice(OPTIONS["moderation"], required=False, help_text="without images (not on edits)")
    user = _Identifier(required=False, max_length=256, help_text="your end user's id, passed to the provider")
    safety_identifier = _Identifier(required=False, max_length=64, help_text="passed to the provider")
    input_fidelity = _Choice(OPTIONS["input_fidelity"], required=False, help_text="with images (edits)")

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
            uploads = {name for name, values in self.initial_data.lists() if not _all_text(values)}
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


def _mask() -> _Uploads:
    return _Uploads(
        source="masks", required=False, help_text="a PNG with alpha, the first image's size: what to change"
    )


class GenerationJSONSerializer(_GenerationRequest):
    pass


class GenerationMultipartSerializer(_GenerationRequest):
    form = True
    reference_image = _Uploads(source="files", required=False)
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
    image = _Uploads(source="files", also=("image[]",), help_text="also accepted as image[]")
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
