import json

from django import forms
from django.contrib import admin
from django.db import models


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only services write: viewable in the admin, never added, edited or deleted."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ModelListField(forms.CharField):
    """`allowed_models` (a JSON list) edited as comma-separated model ids; empty = no limit."""

    def __init__(self, *, encoder=None, decoder=None, **kwargs):
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, str) and value.startswith("["):
            value = json.loads(value)
        return ", ".join(value) if isinstance(value, list) else value or ""

    def to_python(self, value):
        names = [name.strip() for name in (value or "").split(",") if name.strip()]
        return names or None


LIMITS_FORMFIELDS = {models.JSONField: {"form_class": ModelListField}}
LIMITS_FIELDSET = ("Limits", {"fields": ["allowed_models", "images_per_minute", "concurrency", "monthly_credits"]})
