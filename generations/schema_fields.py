"""The fields of the generation requests' contract (generations.schema): each reads its value
strictly — JSON keeps its types (`"n": "2"` is refused, which DRF's IntegerField would take) while
a multipart form's fields arrive as strings (the serializer's `form`) — and a refusal names its
field and says what was wrong.
"""

import re

from django.core.files.uploadedfile import UploadedFile
from rest_framework import serializers
from rest_framework.fields import empty

from generations.models import WebhookEvent
from generations.webhook_urls import UnusableWebhookURL, webhook_url_check

PROMPT_MAX_LENGTH = 32000
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}
_INTEGER = re.compile(r"-?[0-9]{1,9}")


def refuse(message: str):
    raise serializers.ValidationError(message)


class Text(serializers.CharField):
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
                refuse(f"'{self.field_name}' is required")
            return "" if self.default is empty else self.default
        return self.to_internal_value(data)

    def to_internal_value(self, data):
        name = self.field_name
        if not isinstance(data, str):
            refuse(f"'{name}' must be a string")
        if "\x00" in data or not data.isprintable() and any(0xD800 <= ord(c) <= 0xDFFF for c in data):
            refuse(f"'{name}' contains a NUL character or an unpaired surrogate")
        return data.strip() if self.trim_whitespace else data


class Prompt(Text):
    def __init__(self, **kwargs):
        super().__init__(strip=False, max_length=PROMPT_MAX_LENGTH, **kwargs)

    def to_internal_value(self, data):
        prompt = super().to_internal_value(data)
        if not prompt.strip():
            refuse("'prompt' must not be empty")
        if len(prompt) > PROMPT_MAX_LENGTH:
            refuse(f"'prompt' is longer than {PROMPT_MAX_LENGTH} characters")
        return prompt


class WebhookURL(Text, serializers.URLField):
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
                refuse(str(exc))
        return url


class Integer(serializers.IntegerField):
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
            refuse(f"'{self.field_name}' must be an integer between {self.min_value} and {self.max_value}")
        if not self.min_value <= data <= self.max_value:
            refuse(f"'{self.field_name}' must be between {self.min_value} and {self.max_value}")
        return data


class Choice(serializers.ChoiceField):
    """One of the option's values, as a string (a JSON null counts as absent)."""

    def get_value(self, data):
        value = data.get(self.field_name)
        return empty if value is None else value

    def run_validation(self, data=empty):
        if data is empty:
            return None
        if not isinstance(data, str) or data not in self.choices:
            refuse(f"'{self.field_name}' must be one of: {', '.join(self.choices)}")
        return data


class Identifier(Text):
    """An end user's id passed on to the provider: at most `max_length` characters."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > self.max_length:
            refuse(f"'{self.field_name}' is longer than {self.max_length} characters")
        return value


class Flag(serializers.BooleanField):
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
        refuse(f"'{self.field_name}' must be a boolean")


class Events(serializers.ListField):
    """A JSON list of webhook event names; in a form, repeated fields or one comma-separated."""

    child = serializers.ChoiceField(WebhookEvent.values)

    def get_value(self, data):
        if self.field_name not in data:
            return empty
        if not self.parent.form:
            return data[self.field_name]
        items = data.getlist(self.field_name)
        return [event.strip() for item in items for event in item.split(",")] if all_text(items) else items

    def run_validation(self, data=empty):
        if data is empty:
            return None
        choices = WebhookEvent.values
        if not isinstance(data, list) or not data or not all_text(data):
            refuse(f"webhook_events must be a non-empty list of: {', '.join(choices)}")
        unknown = sorted({event for event in data if event not in choices})
        if unknown:
            refuse(f"Unknown webhook event(s) {', '.join(map(repr, unknown))[:200]}; known: {', '.join(choices)}")
        return sorted(set(data))


def all_text(items) -> bool:
    return all(isinstance(item, str) for item in items)


class Uploads(serializers.ListField):
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
            refuse(f"{name} must be a file upload (curl: -F '{name}=@./file.png')")
        return data


class ResponseFormat(serializers.ChoiceField):
    def get_value(self, data):
        return data.get(self.field_name) or "url"

    def run_validation(self, data=empty):
        if not isinstance(data, str) or data not in self.choices:
            refuse("response_format must be 'url' or 'b64_json'")
        return data
