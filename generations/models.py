from django.conf import settings
from django.db import models
from django.db.models import Q

from hub.infra.ids import opaque_id


class ImageModel(models.Model):
    """A catalog row: what a model accepts, what it costs, and which adapter serves it."""

    id = models.CharField(primary_key=True, max_length=64)
    provider = models.CharField(max_length=40, help_text="Who makes the model, shown to clients (e.g. openai)")
    backend = models.CharField(
        max_length=40, blank=True, help_text="Adapter that serves it (local, openai); blank = IMAGE_PROVIDER setting"
    )
    upstream_model = models.CharField(max_length=64, blank=True, help_text="Provider's model id; blank = same as id")
    owned_by = models.CharField(max_length=40, default="openai")
    created = models.PositiveBigIntegerField(default=1767225600)
    sizes = models.JSONField(help_text='Accepted sizes, e.g. ["auto", "1024x1024"]')
    qualities = models.JSONField(help_text='e.g. ["auto", "low", "medium", "high"]')
    # {"1K": {"low": 2, "medium": 4, "high": 8, "auto": 8}, "2K": {...}}
    prices = models.JSONField(help_text="credits per image by resolution tier and quality")
    reference_image_limit = models.PositiveIntegerField(default=16)
    # {"background": ["auto", "transparent"], "user": true, …}: the options it offers (generations.options)
    options = models.JSONField(
        default=dict, blank=True, help_text="OpenAI options it accepts: name → allowed values, or true for any"
    )
    enabled = models.BooleanField(default=True)
    sort_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "id"]

    def __str__(self) -> str:
        return self.id


class GenerationStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


FINISHED = (GenerationStatus.SUCCEEDED, GenerationStatus.FAILED, GenerationStatus.CANCELED)


def _generation_id() -> str:
    return opaque_id("gen")


def _image_id() -> str:
    return opaque_id("img")


class Generation(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=_generation_id, editable=False)
    # Found by Meta.indexes' (owner, -created_at), whose first column it is: an index of its own
    # would be one more to write on every insert and every status change.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="generations", db_index=False
    )
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model = models.ForeignKey(ImageModel, on_delete=models.PROTECT, related_name="+")
    prompt = models.TextField()
    size = models.CharField(max_length=20)
    quality = models.CharField(max_length=10)  # requested quality (auto/low/medium/high)
    n = models.PositiveSmallIntegerField()
    aspect_ratio = models.CharField(max_length=10)
    tier = models.CharField(max_length=4)  # resolution tier reported as `quality` in responses
    is_async = models.BooleanField(default=False)
    reference_count = models.PositiveSmallIntegerField(default=0)
    # The OpenAI options it was asked with (generations.options), "mask": true when it has one.
    options = models.JSONField(default=dict, blank=True)
    # A streamed request's `partial_images` (generations.streams): the worker asks its provider for
    # them and relays each, and its final images, to the stream (generations.partials); null for a
    # request that is not streamed.
    partial_images = models.PositiveSmallIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=GenerationStatus.choices, default=GenerationStatus.QUEUED)
    price_per_image = models.PositiveIntegerField()
    credits_requested = models.PositiveIntegerField()
    credits_refunded = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=1000, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    deadline_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)  # null = not yet handed to the broker
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The tokens its provider said the delivering call used, as OpenAI's answer has them (its
    # `usage`: input_tokens, input_tokens_details, output_tokens, total_tokens); null: not said.
    provider_usage = models.JSONField(null=True, blank=True)
    # Signed webhooks (generations.webhooks): where to POST which events, and the hub origin the
    # request reached, so the payload's image URLs are absolute exactly as the API answers them.
    webhook_url = models.CharField(max_length=2048, blank=True)
    webhook_events = models.JSONField(default=list, blank=True)
    webhook_base_url = models.CharField(max_length=2048, blank=True)
    # Not stored: its place in its model's fair order as the hand-over after its charge found it
    # (generations.services.submit), for its async request's 202 without a round trip of its own.
    queue_position_at_submit: int | None = None

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["status", "deadline_at"]),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(n__gte=1) & Q(n__lte=4), name="generation_n_1_to_4"),
            models.CheckConstraint(
                condition=Q(credits_refunded__lte=models.F("credits_requested")), name="generation_refund_within_charge"
            ),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def credits_consumed(self) -> int:
        if self.status not in FINISHED:
            return 0
        return self.credits_requested - self.credits_refunded


class GeneratedImage(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=_image_id, editable=False)
    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="images")
    index = models.PositiveSmallIntegerField()
    storage_key = models.CharField(max_length=300)
    content_type = models.CharField(max_length=40, default="image/png")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    byte_size = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["generation", "index"], name="one_image_per_generation_index")]


class ReferenceImage(models.Model):
    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="references")
    index = models.PositiveSmallIntegerField()
    storage_key = models.CharField(max_length=300)

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["generation", "index"], name="one_reference_per_index")]


class IdempotencyKey(models.Model):
    """An `Idempotency-Key` an account sent with a generation request: a retry with the same
    key and the same request gets the same generation (charged once); keys live 24 h. A row
    without a generation is the claim of a first request still creating it
    (generations.services.generation_create)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)  # SHA-256 of the parsed request and its references
    generation = models.ForeignKey(Generation, null=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="one_idempotency_key_per_owner")]


def _webhook_message_id() -> str:
    return opaque_id("msg")


class WebhookSecret(models.Model):
    """An account's Standard Webhooks signing secret (`whsec_` + base64 of 32 random bytes).
    Stored as is: the hub must sign with it, so a digest would not do; it is never logged."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    secret = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)


class WebhookEvent(models.TextChoices):
    # A generation's, to the URL it was submitted with; its type is `generation.<event>`.
    COMPLETED = "completed"  # the generation reached a final state (succeeded, failed, canceled)
    STARTED = "started"  # a worker started running it
    # An account's, to its account endpoint (AccountWebhook); the type is the event itself.
    CREDITS_LOW = "credits.low"  # a charge took the balance under the low-balance threshold
    CREDITS_EXPIRING = "credits.expiring"  # a grant's unspent credits expire within 7 days


ACCOUNT_EVENTS = (WebhookEvent.CREDITS_LOW, WebhookEvent.CREDITS_EXPIRING)


class AccountWebhook(models.Model):
    """Where an account's own events (ACCOUNT_EVENTS) are POSTed, signed with its WebhookSecret;
    set on the Billing page."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    url = models.CharField(max_length=2048)
    updated_at = models.DateTimeField(auto_now=True)


class WebhookDeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # retries exhausted, or the URL resolved to a refused address
    GONE = "gone"  # the receiver answered 410: it does not want this webhook any more


class WebhookDelivery(models.Model):
    """One event of one generation to its webhook URL, or one event of an account (`user`) to its
    account endpoint. Its id is the `webhook-id` header, the same on every attempt, so a receiver
    can drop duplicates."""

    id = models.CharField(primary_key=True, max_length=40, default=_webhook_message_id, editable=False)
    generation = models.ForeignKey(
        Generation, null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_deliveries"
    )
    # An account event's: whose it is, where it goes (the endpoint when it happened), its `data`
    # (what the event says, as it was then) and what it is about (`subject`: one delivery each).
    # Found by the unique index below, whose first column it is (with `generation IS NULL`): an
    # index of its own would take an entry for every generation's delivery too.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    url = models.CharField(max_length=2048, blank=True)
    data = models.JSONField(null=True, blank=True)
    subject = models.CharField(max_length=60, blank=True)
    event = models.CharField(max_length=20, choices=WebhookEvent.choices)
    status = models.CharField(
        max_length=10, choices=WebhookDeliveryStatus.choices, default=WebhookDeliveryStatus.PENDING
    )
    # When the next attempt is due (null once the delivery has ended). A claimed attempt pushes it
    # past its own timeout: if the worker dies mid-attempt, the sweeper sends it again after that.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)  # every attempt ever; the fence of its outcome
    schedule_step = models.PositiveSmallIntegerField(default=0)  # failed attempts since the schedule (re)started
    created_at = models.DateTimeField(auto_now_add=True)  # the event's time (payload `timestamp`)

    class Meta:
        ordering = ["created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"])]
        constraints = [
            models.UniqueConstraint(fields=["generation", "event"], name="one_delivery_per_event"),
            models.UniqueConstraint(
                fields=["user", "event", "subject"],
                condition=Q(generation__isnull=True),
                name="one_delivery_per_account_event",
            ),
            models.CheckConstraint(
                condition=Q(generation__isnull=False, user__isnull=True)
                | Q(generation__isnull=True, user__isnull=False),
                name="delivery_of_a_generation_or_an_account",
            ),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def type(self) -> str:
        """The payload's `type`: `generation.completed`, `credits.low`, …"""
        return f"generation.{self.event}" if self.generation_id else self.event


class WebhookAttempt(models.Model):
    """One POST of a delivery (or its refusal): what happened, for the account page and the admin."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempts_made")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # the receiver's HTTP status
    error = models.CharField(max_length=40, blank=True)  # generations.webhooks' outcomes
    detail = models.CharField(max_length=300, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["started_at", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="one_attempt_per_number")]

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class SweepSchedule(models.Model):
    """When the next sweep is due: a single row. Every worker process offers to sweep each
    period, and a conditional update of this row lets exactly one of them, across all
    replicas, run it (generations.sweeper.sweep_claim) — the schedule needs no process of its own."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    due_at = models.DateTimeField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="one_sweep_schedule")]


class GenerationEventKind(models.TextChoices):
    QUEUED = "queued", "queued"  # charged and handed to the queue
    CLAIMED = "claimed", "claimed"  # a worker took it for an attempt
    PROVIDER_CALL_STARTED = "provider_call_started", "provider call started"
    PROVIDER_CALL_ENDED = "provider_call_ended", "provider call ended"  # with its outcome and latency
    RETRIED = "retried", "retried"  # its worker was lost: back to the queue for another attempt
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELED = "canceled", "canceled"
    REFUNDED = "refunded", "refunded"  # credits given back (all, or the images not delivered)


class GenerationEvent(models.Model):
    """One step of a generation's history, appended in the transaction (or the statement) of the
    transition it records (generations.services.events): a transition that does not commit
    leaves none. Never updated or deleted (but with its generation)."""

    # Found by the unique index, whose first column it is (an index of its own: one more write).
    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="events", db_index=False)
    kind = models.CharField(max_length=24, choices=GenerationEventKind.choices)
    attempt = models.PositiveSmallIntegerField()  # the attempt it belongs to; 0 before the first claim
    outcome = models.CharField(max_length=40, blank=True)  # a provider call's (ok, or its error kind), an error code
    latency_ms = models.PositiveIntegerField(null=True, blank=True)  # a provider call's
    detail = models.JSONField(default=dict, blank=True)  # a few facts: images, credits
    created_at = models.DateTimeField()  # when it happened (a provider call's start: when it started)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # A kind happens once per attempt (a final state and a refund: once at all), so a
            # transition recorded twice is refused by the database, whatever the code does.
            models.UniqueConstraint(fields=["generation", "kind", "attempt"], name="one_event_per_kind_and_attempt")
        ]

    def __str__(self) -> str:
        return f"{self.generation_id} {self.kind} #{self.attempt}"
