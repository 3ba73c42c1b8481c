"""Upstreams: where a catalog model's provider calls go — an adapter, a base URL, a credential
(encrypted at rest: upstreams.credentials), the upstream's own model id per catalog model, an
order (priority, then weight) and the limits the provider holds its key to.

A model with no enabled upstream is served as before upstreams existed: by its backend (or
IMAGE_PROVIDER) with OPENAI_API_KEY / OPENAI_BASE_URL (upstreams.routing.DEFAULT).
"""

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from generations.models import Generation, ImageModel
from hub.infra.ids import opaque_id


class Adapter(models.TextChoices):
    OPENAI = "openai", "OpenAI or an OpenAI-compatible server"
    AZURE = "azure", "Azure OpenAI"


def _upstream_id() -> str:
    return opaque_id("up")


class Upstream(models.Model):
    # Random, not a sequence: it names the upstream's shared state in Redis, which every
    # deployment (and test run) on one Redis server keeps apart this way.
    id = models.CharField(primary_key=True, max_length=40, default=_upstream_id, editable=False)
    name = models.SlugField(max_length=64, unique=True)
    adapter = models.CharField(max_length=20, choices=Adapter.choices, default=Adapter.OPENAI)
    base_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="OpenAI: blank for api.openai.com, or an OpenAI-compatible server's base URL (…/v1);"
        " Azure OpenAI: the resource's endpoint (https://NAME.openai.azure.com)",
    )
    api_version = models.CharField(max_length=40, blank=True, help_text="Azure OpenAI's api-version")
    credential_encrypted = models.TextField(editable=False)  # a Fernet token (upstreams.credentials)
    credential_hint = models.CharField(max_length=20, editable=False)  # e.g. sk-…abcd, what is ever shown
    image_models = models.ManyToManyField(ImageModel, through="UpstreamRoute", related_name="+")
    priority = models.PositiveSmallIntegerField(default=0, help_text="Lower first: a model's calls go to its lowest")
    weight = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Share of the calls among upstreams of one priority"
    )
    concurrency = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Calls in flight at once, across every worker; blank: learned from the provider's 429s",
    )
    images_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Blank: no limit"
    )
    prices = models.JSONField(
        default=dict,
        blank=True,
        help_text='What the provider bills, in the currency of HUB_CREDIT_VALUE: {"per_image": {"low":'
        ' {"1024x1024": "0.011", "*": "0.016"}, "*": {"*": "0.167"}}} or {"per_million_tokens": {"input_text":'
        ' "5", "input_image": "10", "output_image": "40", "output_text": "10"}}; blank: costs unknown',
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]

    def __str__(self) -> str:
        return self.name


class UpstreamRoute(models.Model):
    """One catalog model served by one upstream, under the upstream's own model id (an Azure
    deployment's name, another server's model name)."""

    upstream = models.ForeignKey(Upstream, on_delete=models.CASCADE, related_name="routes")
    model = models.ForeignKey(ImageModel, on_delete=models.CASCADE, related_name="upstream_routes")
    upstream_model = models.CharField(
        max_length=64, blank=True, help_text="The upstream's model id; blank: the catalog model's upstream model"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["upstream", "model"], name="upstream_route_once")]

    def __str__(self) -> str:
        return f"{self.model_id} → {self.upstream}"


class UpstreamCall(models.Model):
    """One provider call of a generation (an attempt: a failover makes two), written when the call
    ends (workers.upstream_calls) and never changed: which upstream, how long, how it ended, the
    tokens the provider said it used and what that cost by the upstream's prices then
    (upstreams.costs). The cost report (upstreams.selectors) sums these."""

    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="upstream_calls")
    model = models.ForeignKey(ImageModel, on_delete=models.PROTECT, related_name="+", db_index=False)
    # The row, while it exists; its name stays (and names the default upstream, which has no row).
    upstream = models.ForeignKey(Upstream, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls")
    upstream_name = models.CharField(max_length=64)
    started_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField()
    outcome = models.CharField(max_length=20)  # ok, or the error's kind (rate_limited, timeout, rejected…)
    images = models.PositiveSmallIntegerField(default=0)
    input_text_tokens = models.PositiveIntegerField(null=True, blank=True)  # null: the provider did not say
    input_image_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_image_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_text_tokens = models.PositiveIntegerField(null=True, blank=True)
    cost = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)  # null: unknown (no prices)

    class Meta:
        ordering = ["started_at", "id"]
        indexes = [models.Index(fields=["started_at"])]  # the report reads days
        constraints = [
            models.CheckConstraint(condition=Q(cost__gte=0), name="upstream_call_cost_not_negative"),
            # A failed call delivered nothing and is billed nothing.
            models.CheckConstraint(
                condition=Q(outcome="ok") | (Q(images=0) & (Q(cost__isnull=True) | Q(cost=0))),
                name="upstream_call_failed_costs_nothing",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.generation_id} → {self.upstream_name} {self.outcome}"
