from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from billing.selectors import ledger_for_generation
from generations.catalog import size_shape
from generations.models import (
    GeneratedImage,
    Generation,
    GenerationEvent,
    ImageModel,
    WebhookAttempt,
    WebhookDelivery,
)
from generations.options import catalog_options_errors
from generations.webhooks import webhook_delivery_redeliver
from hub.admin import ReadOnlyAdmin
from hub.http.bounds import column_range
from hub.infra import storage

# A request is at most 4 images, charged as one number: 4 of the highest price must fit the
# generation's credits column (else every request at that price was a 500).
PRICE_MAX = column_range(Generation, "credits_requested")[1] // 4


def _image_url(image: GeneratedImage) -> str:
    # A relative /media/… URL is fine inside the admin; S3 gives an absolute presigned one.
    return storage.object_url(image.storage_key, base_url="")


class ImageModelForm(forms.ModelForm):
    class Meta:
        model = ImageModel
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        cleaned["options"] = cleaned.get("options") or {}
        for error in catalog_options_errors(cleaned["options"]):
            self.add_error("options", error)
        sizes, qualities, prices = cleaned.get("sizes"), cleaned.get("qualities"), cleaned.get("prices")
        if not _strings(sizes):
            self.add_error("sizes", 'A list of sizes such as ["auto", "1024x1024"].')
            return cleaned
        try:
            tiers = {size_shape(size).tier for size in sizes}
        except ValueError:
            self.add_error("sizes", 'Each size is "auto" or WIDTHxHEIGHT, e.g. "1536x1024".')
            return cleaned
        if not _strings(qualities):
            self.add_error("qualities", 'A list of qualities such as ["low", "high"].')
            return cleaned
        if not isinstance(prices, dict):
            self.add_error("prices", 'An object such as {"1K": {"low": 2, "high": 8}}.')
            return cleaned
        priced = {(tier, quality): _price(prices, tier, quality) for tier in sorted(tiers) for quality in qualities}
        missing = [f"{tier}/{quality}" for (tier, quality), price in priced.items() if price is None]
        too_high = [f"{tier}/{quality}" for (tier, quality), price in priced.items() if (price or 0) > PRICE_MAX]
        if missing:
            self.add_error("prices", f"A whole number of credits above 0 is needed for: {', '.join(missing)}.")
        if too_high:
            self.add_error(
                "prices", f"A price is at most {PRICE_MAX} credits (4 images in one charge): {', '.join(too_high)}."
            )
        return cleaned


def _strings(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, str) and item for item in value)


def _price(prices: dict, tier: str, quality: str) -> int | None:
    """The price of tier/quality: a whole number of credits above 0, else None."""
    price = prices.get(tier, {}).get(quality) if isinstance(prices.get(tier), dict) else None
    return price if isinstance(price, int) and not isinstance(price, bool) and price > 0 else None


@admin.register(ImageModel)
class ImageModelAdmin(admin.ModelAdmin):
    form = ImageModelForm
    list_display = ["id", "provider", "backend", "enabled", "prices_1k", "reference_image_limit", "sort_order"]
    list_editable = ["enabled", "sort_order"]
    list_filter = ["enabled", "provider"]
    actions = ["enable", "disable"]

    def get_readonly_fields(self, request, obj=None):
        return ["id"] if obj else []  # clients and generations refer to a model by its id

    def has_delete_permission(self, request, obj=None):
        return False  # generations keep pointing at their model: disable it instead

    @admin.display(description="Credits per image (1K)")
    def prices_1k(self, model):
        return ", ".join(f"{quality} {price}" for quality, price in model.prices.get("1K", {}).items())

    @admin.action(description="Enable the selected models", permissions=["change"])
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable the selected models", permissions=["change"])
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled: bool):
        for model in queryset:
            model.enabled = enabled
            model.save(update_fields=["enabled"])
            self.log_change(request, model, "Enabled" if enabled else "Disabled")
        self.message_user(
            request, f"{'Enabled' if enabled else 'Disabled'} {queryset.count()} model(s).", messages.SUCCESS
        )


class GeneratedImageInline(admin.TabularInline):
    model = GeneratedImage
    fields = ["preview", "index", "id", "width", "height", "byte_size", "content_type", "storage_key"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="Image")
    def preview(self, image):
        url = _image_url(image)
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">'
            '<img src="{}" alt="" style="height:96px;border-radius:4px"></a>',
            url,
            url,
        )


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    fields = ["delivery", "event", "status", "attempts", "next_attempt_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="webhook-id")
    def delivery(self, delivery):
        return delivery.id


class GenerationEventInline(admin.TabularInline):
    """The generation's history (generations.services.events): appended by the services, never
    edited."""

    model = GenerationEvent
    fields = ["created_at", "kind", "attempt", "outcome", "latency_ms", "detail"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "history"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Generation)
class GenerationAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "owner",
        "model",
        "status",
        "n",
        "credits_requested",
        "credits_refunded",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "model", "is_async", "created_at"]
    search_fields = ["id", "owner__email", "prompt"]
    list_select_related = ["owner", "model"]
    date_hierarchy = "created_at"
    inlines = [GenerationEventInline, GeneratedImageInline, WebhookDeliveryInline]
    fieldsets = [
        (None, {"fields": ["id", "owner", "api_key", "status", "error_code", "error_message", "prompt"]}),
        (
            "Request",
            {
                "fields": [
                    "model",
                    "size",
                    "quality",
                    "n",
                    "aspect_ratio",
                    "tier",
                    "is_async",
                    "reference_count",
                    "options",
                ]
            },
        ),
        ("Credits", {"fields": ["price_per_image", "credits_requested", "credits_refunded", "credit_movements"]}),
        ("Provider", {"fields": ["provider_usage"]}),
        ("Timing", {"fields": ["attempts", "created_at", "enqueued_at", "started_at", "finished_at", "deadline_at"]}),
        ("Webhook", {"fields": ["webhook_url", "webhook_events"]}),
    ]

    readonly_fields = ["credit_movements"]

    @admin.display(description="Ledger")
    def credit_movements(self, generation):
        entries = ledger_for_generation(generation_id=generation.id)
        url = reverse("admin:billing_ledgerentry_changelist")
        rows = format_html_join(
            "",
            "<li>{} {} ({})</li>",
            ((entry.get_kind_display(), f"{entry.amount:+d}", entry.memo) for entry in entries),
        )
        return format_html(
            '<ul style="margin:0;padding-left:1em">{}</ul><a href="{}?q={}">Open in the ledger</a>',
            rows,
            url,
            generation.id,
        )


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ["number", "started_at", "status_code", "error", "detail", "latency_ms"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """Deliveries and their attempts as the workers wrote them; an operator may only redeliver."""

    list_display = ["id", "generation", "user", "event", "status", "attempts", "next_attempt_at", "created_at"]
    list_filter = ["status", "event", "created_at"]
    search_fields = ["id", "generation__id", "generation__owner__email", "user__email"]
    list_select_related = ["generation", "user"]
    fields = [
        "id",
        "generation",
        "user",
        "event",
        "subject",
        "url",
        "data",
        "status",
        "attempts",
        "schedule_step",
        "next_attempt_at",
        "created_at",
    ]
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    def has_redeliver_permission(self, request):
        return request.user.has_perm("generations.change_webhookdelivery")

    @admin.action(
        description="Redeliver: a fresh attempt now, retry schedule from the start", permissions=["redeliver"]
    )
    def redeliver(self, request, queryset):
        for delivery in queryset:
            webhook_delivery_redeliver(delivery_id=delivery.id)
            self.log_change(request, delivery, "Redelivered")
        self.message_user(request, f"Redelivering {queryset.count()} webhook(s).", messages.SUCCESS)
