from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from hub.admin import ReadOnlyAdmin
from hub.http.errors import HubError
from upstreams.costs import prices_check
from upstreams.models import Upstream, UpstreamCall, UpstreamRoute
from upstreams.selectors import cost_per_day
from upstreams.services import credential_set, upstream_check
from upstreams.state import UpstreamState, describe, upstream_state

COST_DAYS = 31  # the admin's "Cost per day"


class UpstreamForm(forms.ModelForm):
    base_url = forms.URLField(
        label="Base URL",
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text=Upstream._meta.get_field("base_url").help_text,
    )
    # Write-only: never rendered back (render_value=False); blank on a change keeps the stored one.
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted and only ever shown as its hint; leave blank to keep the current one",
    )

    class Meta:
        model = Upstream
        fields = [
            "name",
            "adapter",
            "base_url",
            "api_version",
            "api_key",
            "priority",
            "weight",
            "concurrency",
            "images_per_minute",
            "prices",
            "enabled",
        ]

    def clean(self):
        cleaned = super().clean()
        upstream = Upstream(**{name: cleaned.get(name) for name in ("adapter", "base_url", "api_version")})
        try:
            upstream_check(upstream)
            cleaned["prices"] = prices_check(cleaned.get("prices"))
            api_key = cleaned.get("api_key")
            if api_key or self.instance._state.adding:
                credential_set(upstream=self.instance, api_key=api_key or "")
        except HubError as exc:
            self.add_error(exc.param if exc.param in self.fields else None, exc.message)
        return cleaned


class UpstreamRouteInline(admin.TabularInline):
    model = UpstreamRoute
    extra = 1
    verbose_name = "model served"
    verbose_name_plural = "models served (the upstream's model id: blank for the catalog's)"


@admin.register(Upstream)
class UpstreamAdmin(admin.ModelAdmin):
    form = UpstreamForm
    inlines = [UpstreamRouteInline]
    list_display = [
        "name",
        "adapter",
        "where",
        "credential_hint",
        "served",
        "priority",
        "weight",
        "limits",
        "enabled",
        "circuit",
        "in_flight",
        "recent",
    ]
    list_filter = ["enabled", "adapter"]
    readonly_fields = ["credential_hint", "state_now"]
    actions = ["enable", "disable"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("routes")

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        return fields if obj else [name for name in fields if name not in self.readonly_fields]

    @staticmethod
    def _state(upstream: Upstream) -> UpstreamState:
        return upstream_state(upstream.pk)  # one script in Redis: a few rows, a few columns

    @admin.display(description="Base URL")
    def where(self, upstream):
        return upstream.base_url or "api.openai.com"

    @admin.display(description="Models")
    def served(self, upstream):
        return ", ".join(route.model_id for route in upstream.routes.all())

    @admin.display(description="Limits")
    def limits(self, upstream):
        concurrency = f"{upstream.concurrency} at once" if upstream.concurrency else "learned"
        per_minute = f", {upstream.images_per_minute}/min" if upstream.images_per_minute else ""
        return concurrency + per_minute

    @admin.display(description="Circuit")
    def circuit(self, upstream):
        state = self._state(upstream)
        return state.circuit if state.known else "?"

    @admin.display(description="In flight (limit)")
    def in_flight(self, upstream):
        state = self._state(upstream)
        if not state.known:
            return "?"
        limit = state.limit(upstream.concurrency)
        learned = f", learned {state.learned_limit:.1f}" if state.learned_limit is not None else ""
        return f"{state.slots_in_use} ({limit}{learned})"

    @admin.display(description="Errors, latency")
    def recent(self, upstream):
        state = self._state(upstream)
        errors = f"{state.error_ratio:.0%}" if state.error_ratio is not None else "–"
        latency = f"{state.latency_seconds:.2f} s" if state.latency_seconds is not None else "–"
        return f"{errors}, {latency}"

    @admin.display(description="State now")
    def state_now(self, upstream):
        return describe(upstream_state(upstream.pk), upstream.concurrency)

    @admin.action(description="Enable the selected upstreams", permissions=["change"])
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable the selected upstreams", permissions=["change"])
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled: bool):
        for upstream in queryset:
            upstream.enabled = enabled
            upstream.save(update_fields=["enabled", "updated_at"])
            self.log_change(request, upstream, "Enabled" if enabled else "Disabled")
        self.message_user(
            request, f"{'Enabled' if enabled else 'Disabled'} {queryset.count()} upstream(s).", messages.SUCCESS
        )


@admin.register(UpstreamCall)
class UpstreamCallAdmin(ReadOnlyAdmin):
    list_display = [
        "started_at",
        "generation",
        "model",
        "upstream_name",
        "outcome",
        "latency_ms",
        "images",
        "input_text_tokens",
        "input_image_tokens",
        "output_image_tokens",
        "output_text_tokens",
        "cost",
    ]
    list_filter = ["outcome", "upstream_name", "model"]
    search_fields = ["generation__id"]
    date_hierarchy = "started_at"
    list_select_related = ["generation", "model"]
    change_list_template = "admin/upstreams/upstreamcall/change_list.html"

    def get_urls(self):
        view = self.admin_site.admin_view(self.cost_view)
        return [path("cost/", view, name="upstreams_upstreamcall_cost"), *super().get_urls()]

    def cost_view(self, request):
        """Per UTC day, model and upstream over the last COST_DAYS days: images, credits, upstream
        cost and margin (upstreams.selectors.cost_per_day)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Upstream cost per day (last {COST_DAYS} days)",
            "rows": cost_per_day(days=COST_DAYS),
        }
        return TemplateResponse(request, "admin/upstreams/upstreamcall/cost.html", context)
