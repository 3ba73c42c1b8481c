"""Periodic recovery: whatever crashed, every charged generation ends finished, within its
deadline plus one sweeper period."""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apikeys.services import api_key_rate_windows_expire
from billing.alerts import balance_crossings_send_due
from billing.services import credits_expire_all_due
from generations import errors
from generations.credit_alerts import grants_expiring_warn
from generations.limits import slots_reconcile
from generations.models import Generation, GenerationStatus, SweepSchedule
from generations.services import generation_enqueue, generation_fail, generation_requeue, idempotency_keys_expire
from generations.webhooks import webhook_deliveries_send_due

logger = logging.getLogger(__name__)

UNSENT_GRACE = timedelta(seconds=10)  # on_commit normally sends within milliseconds


@dataclass
class SweepReport:
    timed_out: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    poisoned: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    webhooks_sent: list[str] = field(default_factory=list)
    expired_credits: int = 0
    released_slots: int = 0
    crossings_sent: list[int] = field(default_factory=list)  # accounts whose crossings were handed over
    expiry_warnings: int = 0


def sweep_claim(*, period: timedelta) -> bool:
    """True for the one caller that takes the sweep now due, and moves the next one a period on.

    Every worker process asks every fraction of a period (workers.schedule); the conditional
    UPDATE lets one of them win, on any number of replicas, without a scheduler process. The row
    is made by the first claim (a flushed or new database has none): the insert that succeeds wins.
    """
    now = timezone.now()
    if SweepSchedule.objects.filter(due_at__lte=now).update(due_at=now + period):
        return True
    _, created = SweepSchedule.objects.get_or_create(pk=1, defaults={"due_at": now + period})
    return created


def generations_sweep() -> SweepReport:
    now = timezone.now()
    report = SweepReport()
    unfinished = Generation.objects.filter(status__in=[GenerationStatus.QUEUED, GenerationStatus.RUNNING])

    overdue = now - timedelta(seconds=settings.GENERATION_DEADLINE_MARGIN_SECONDS)
    for generation_id in unfinished.filter(deadline_at__lt=overdue).values_list("pk", flat=True):
        if generation_fail(generation_id=generation_id, code=errors.TIMEOUT, message=errors.timeout_message()):
            report.timed_out.append(generation_id)

    lost = unfinished.filter(status=GenerationStatus.RUNNING, lease_expires_at__lt=now)
    for generation_id, attempts in lost.values_list("pk", "attempts"):
        if attempts >= settings.GENERATION_MAX_ATTEMPTS:
            if generation_fail(
                generation_id=generation_id, code=errors.WORKER_LOST, message=errors.WORKER_LOST_MESSAGE
            ):
                report.poisoned.append(generation_id)
        elif generation_requeue(generation_id=generation_id, attempt=attempts):
            report.requeued.append(generation_id)

    # The outbox: charged and committed, but the broker never took the message — or took it
    # and it never led to a claim (a task that failed for good before claiming, a lost
    # message). A duplicate is harmless: the claim lets one copy run.
    unsent = Q(enqueued_at__isnull=True, created_at__lt=now - UNSENT_GRACE)
    stale = Q(enqueued_at__lt=now - timedelta(seconds=settings.GENERATION_RESEND_AFTER_SECONDS))
    for generation_id in unfinished.filter(unsent | stale, status=GenerationStatus.QUEUED).values_list("pk", flat=True):
        if generation_enqueue(generation_id=generation_id):
            report.sent.append(generation_id)

    # Webhook deliveries due: retries after long waits, and what the broker never took.
    report.webhooks_sent = webhook_deliveries_send_due()
    report.expired_credits = credits_expire_all_due()
    # After the expiries (an expiry may cross a threshold): what the queue did not handle, and
    # the grants that expire within a week.
    report.crossings_sent = balance_crossings_send_due()
    report.expiry_warnings = grants_expiring_warn()
    idempotency_keys_expire()
    # After the steps above, so the slots of what they just failed are already free.
    report.released_slots = slots_reconcile()
    api_key_rate_windows_expire()
    if any((report.timed_out, report.requeued, report.poisoned, report.sent)):
        logger.warning("sweep: %s", report)
    return report
