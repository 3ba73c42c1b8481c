"""Signed webhooks: an account's signing secret, the deliveries of a generation's events and of
the account's own events (credits.low, credits.expiring: generations.credit_alerts) to its
account endpoint, and their schedule.

This module owns the rows and the rules — what is due, which attempt may run, what an outcome
means for the delivery. Sending (the signed POST through an SSRF-guarded connection) is the
housekeeping worker's job: workers.webhooks.

A delivery is written in the same transaction as the event it reports (a generation's finish,
its claim), so it can only be lost together with the event; it is handed to the broker after
the commit, and the sweeper sends whatever is due and was not taken (an outbox, like the
generations' own). Every attempt claims the delivery with a conditional update, so duplicates
of a message never send the same attempt twice.
"""

import base64
import logging
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from generations.models import (
    AccountWebhook,
    Generation,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookSecret,
)
from generations.webhook_urls import UnusableWebhookURL, webhook_url_check
from hub.http.errors import InvalidRequest

logger = logging.getLogger(__name__)

DELIVER_TASK_NAME = "webhooks.deliver"  # the Celery task that makes one attempt (workers.tasks)
SECRET_PREFIX = "whsec_"

# Outcomes of an attempt that sent nothing or got no answer (WebhookAttempt.error).
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
ADDRESS_REFUSED = "address_refused"  # the host is or resolves to an address no webhook may reach
INVALID_URL = "invalid_url"  # a URL stored before a rule of generations.webhook_urls refused it
ATTEMPT_ERROR = "attempt_error"  # the attempt raised something unforeseen (the worker's log has it)

# A claimed attempt holds its delivery this long past its timeout (DNS resolution is not under
# the timeout): a worker that dies mid-attempt leaves it due again after that, and the sweeper
# resends it.
CLAIM_MARGIN = timedelta(seconds=30)
# on_commit hands a delivery to the broker within milliseconds; the sweeper sends what is due
# longer than this (a broker that was down, a lost message, a worker that died mid-attempt).
UNSENT_GRACE = timedelta(seconds=10)
SWEEP_BATCH = 500


def webhook_secret_get_or_create(*, user) -> WebhookSecret:
    """The account's signing secret, made on first use (the account page, the first delivery)."""
    row, _ = WebhookSecret.objects.get_or_create(user=user, defaults={"secret": _new_secret()})
    return row


def webhook_secret_rotate(*, user) -> WebhookSecret:
    """A new secret at once: the old one stops verifying. Attempts still pending are signed
    with the new one (deliveries are signed when sent)."""
    row, _ = WebhookSecret.objects.update_or_create(
        user=user, defaults={"secret": _new_secret(), "rotated_at": timezone.now()}
    )
    logger.info("webhook secret of user %s rotated", user.pk)
    return row


def _new_secret() -> str:
    """Standard Webhooks' form: `whsec_` and the base64 of 32 random bytes (the HMAC key)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_delivery_create(*, generation: Generation, event: str) -> None:
    """Record `event` of `generation` for its webhook, if it asked for that event; call it inside
    the transaction that made the event happen. Once per event and generation (a re-claimed
    generation does not report `started` twice): the unique index decides."""
    if not generation.webhook_url or event not in generation.webhook_events:
        return
    delivery, created = WebhookDelivery.objects.get_or_create(
        generation=generation, event=event, defaults={"next_attempt_at": timezone.now()}
    )
    if created:
        transaction.on_commit(lambda: webhook_delivery_enqueue(delivery_id=delivery.id))


def account_webhook_url(*, user) -> str:
    """The account endpoint its own events go to ("" when it has none)."""
    return AccountWebhook.objects.filter(user=user).values_list("url", flat=True).first() or ""


def account_webhook_set(*, user, url: str) -> None:
    """Set the account endpoint, or remove it (an empty `url`). Held to the rules a generation's
    `webhook_url` is (generations.webhook_urls): InvalidRequest saying why, `param: webhook_url`."""
    url = url.strip()
    if not url:
        AccountWebhook.objects.filter(user=user).delete()
        return
    try:
        webhook_url_check(url)
    except UnusableWebhookURL as exc:
        raise InvalidRequest(str(exc), param="webhook_url") from exc
    AccountWebhook.objects.update_or_create(user=user, defaults={"url": url})


def webhook_account_event_create(*, user, event: str, subject: str, data: dict) -> None:
    """Record an account event for its endpoint — its `data` as it is now, to the endpoint it has
    now — if it has one; call it inside the transaction that made the event happen. Once per
    event and `subject` (what it is about: a crossing, a grant): the unique index decides."""
    url = account_webhook_url(user=user)
    if not url:
        return
    delivery, created = WebhookDelivery.objects.get_or_create(
        user=user,
        event=event,
        subject=subject,
        generation=None,
        defaults={"url": url, "data": data, "next_attempt_at": timezone.now()},
    )
    if created:
        transaction.on_commit(lambda: webhook_delivery_enqueue(delivery_id=delivery.id))


def webhook_delivery_enqueue(*, delivery_id: str, countdown: float | None = None) -> None:
    """Hand a delivery to the housekeeping workers. A broker that is down loses nothing: the
    delivery stays due and the sweeper sends it."""
    from hub.celery import app

    try:
        app.send_task(
            DELIVER_TASK_NAME,
            args=[delivery_id],
            queue=settings.HOUSEKEEPING_QUEUE,
            countdown=countdown,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
        )
    except Exception as exc:  # noqa: BLE001 — kombu raises transport-specific errors; the sweeper resends
        logger.warning("webhook %s: broker unavailable, the sweeper sends it: %s", delivery_id, exc)


def webhook_delivery_claim(*, delivery_id: str) -> WebhookDelivery | None:
    """Take the delivery's next attempt if it is due; None if it is not (sent already, not due
    yet, or another worker holds it). The claim numbers the attempt (`attempts`), the fence its
    outcome is recorded against."""
    now = timezone.now()
    hold = now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS) + CLAIM_MARGIN
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=WebhookDeliveryStatus.PENDING, next_attempt_at__lte=now
    ).update(attempts=F("attempts") + 1, next_attempt_at=hold)
    if not claimed:
        return None
    return WebhookDelivery.objects.select_related("generation__owner", "user").get(pk=delivery_id)


@dataclass(frozen=True)
class AttemptOutcome:
    started_at: datetime
    latency_ms: int
    status_code: int | None = None  # the receiver's answer, when there was one
    error: str = ""  # one of the outcomes above, when there was no answer
    detail: str = ""


def webhook_attempt_record(*, delivery: WebhookDelivery, outcome: AttemptOutcome) -> WebhookDelivery:
    """Write the claimed attempt and decide what follows it:

    - 2xx: succeeded;
    - 410 Gone: the receiver wants no more of it — stopped (`gone`);
    - a refused address or an unusable URL: failed at once — no retry makes a forbidden address
      safe or the URL usable, and nothing was sent;
    - anything else (timeout, connection error, an attempt that raised, another status, a
      redirect — never followed): retried after the schedule's next wait with jitter, failed once
      the schedule runs out.

    An outcome whose attempt is no longer the delivery's latest (its worker was presumed dead and
    another attempt was claimed) is kept as history but decides nothing.
    """
    number = delivery.attempts
    code = outcome.status_code
    step = delivery.schedule_step
    delay = None
    if code is not None and 200 <= code < 300:
        status = WebhookDeliveryStatus.SUCCEEDED
    elif code == 410:
        status = WebhookDeliveryStatus.GONE
    elif outcome.error in (ADDRESS_REFUSED, INVALID_URL) or step >= len(settings.WEBHOOK_RETRY_DELAYS_SECONDS):
        status = WebhookDeliveryStatus.FAILED
    else:
        status = WebhookDeliveryStatus.PENDING
        # Jitter only lengthens a wait, so the schedule spans at least its nominal length.
        delay = settings.WEBHOOK_RETRY_DELAYS_SECONDS[step] * random.uniform(1.0, 1.25)
        step += 1
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=outcome.started_at,
            status_code=code,
            error=outcome.error,
            detail=outcome.detail[:300],
            latency_ms=outcome.latency_ms,
        )
        next_attempt_at = timezone.now() + timedelta(seconds=delay) if delay is not None else None
        decided = WebhookDelivery.objects.filter(
            pk=delivery.pk, attempts=number, status=WebhookDeliveryStatus.PENDING
        ).update(status=status, next_attempt_at=next_attempt_at, schedule_step=step)
        # A short wait rides on the broker's countdown; a long one is left to the sweeper (a
        # countdown of hours would sit unacknowledged in Redis past its visibility timeout).
        if decided and delay is not None and delay < settings.SWEEPER_INTERVAL_SECONDS:
            transaction.on_commit(lambda: webhook_delivery_enqueue(delivery_id=delivery.pk, countdown=delay))
    if not decided:
        logger.info(
            "webhook %s attempt %s: %s, superseded by a later attempt", delivery.pk, number, code or outcome.error
        )
    else:
        log = logger.info if status != WebhookDeliveryStatus.FAILED else logger.warning
        log("webhook %s attempt %s: %s → %s", delivery.pk, number, code or outcome.error, status)
    delivery.refresh_from_db()
    return delivery


def webhook_delivery_redeliver(*, delivery_id: str) -> None:
    """An operator's redelivery: due now, with the retry schedule from its start. The
    `webhook-id` stays, so a receiver that did get it can recognise the duplicate."""
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        status=WebhookDeliveryStatus.PENDING, next_attempt_at=timezone.now(), schedule_step=0
    )
    transaction.on_commit(lambda: webhook_delivery_enqueue(delivery_id=delivery_id))


def webhook_deliveries_send_due() -> list[str]:
    """The sweeper's part: hand over every delivery due for longer than UNSENT_GRACE. A
    duplicate of a message still queued is harmless: only one claim of an attempt succeeds."""
    due = WebhookDelivery.objects.filter(
        status=WebhookDeliveryStatus.PENDING, next_attempt_at__lt=timezone.now() - UNSENT_GRACE
    ).order_by("next_attempt_at")
    sent = list(due.values_list("pk", flat=True)[:SWEEP_BATCH])
    for delivery_id in sent:
        webhook_delivery_enqueue(delivery_id=delivery_id)
    return sent
