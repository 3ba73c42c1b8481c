import random

import structlog
from celery import shared_task

from billing.alerts import CROSSINGS_TASK_NAME
from generations.credit_alerts import balance_crossings_handle
from generations.services import FAIR_HEADER, RUN_TASK_NAME
from generations.webhooks import DELIVER_TASK_NAME
from workers.runner import ClaimUnavailable, generation_run
from workers.turns import generation_turn
from workers.webhooks import webhook_deliver

# Retries of a task that could not reach the database before its claim: exponential backoff
# capped at a minute, with jitter so a recovering database is not hit by every worker at once.
# After ~15 minutes the deadline has passed and the sweeper has failed (and refunded) it.
CLAIM_RETRY_CAP_SECONDS = 60
CLAIM_MAX_RETRIES = 20


@shared_task(name=RUN_TASK_NAME, bind=True, max_retries=CLAIM_MAX_RETRIES)
def run_generation(self, generation_id: str) -> None:
    """One generation's task. Sent with its model's fair order (FAIR_HEADER: Redis), it runs the
    order's next generation once it holds an upstream slot (workers.turns); without one, its own."""
    structlog.contextvars.bind_contextvars(generation_id=generation_id, request_id=self.request.get("request_id"))
    fair_model = self.request.get(FAIR_HEADER)
    try:
        if fair_model:
            generation_turn(model_id=fair_model)
        else:
            generation_run(generation_id)
    except ClaimUnavailable as exc:
        delay = min(2**self.request.retries, CLAIM_RETRY_CAP_SECONDS) * random.uniform(0.5, 1.0)
        headers = {FAIR_HEADER: fair_model} if fair_model else None
        raise self.retry(exc=exc, countdown=delay, headers=headers) from exc


@shared_task(name=DELIVER_TASK_NAME)
def deliver_webhook(delivery_id: str) -> None:
    """One attempt of a webhook delivery (housekeeping queue). A failure to reach the database
    is not retried here: the delivery stays due and the sweeper sends it again."""
    webhook_deliver(delivery_id)


@shared_task(name=CROSSINGS_TASK_NAME)
def handle_balance_crossings(account_id: int) -> None:
    """An account's balance crossed a threshold: its alert and its auto top-up (housekeeping
    queue). Whatever is left undone — Stripe not reached, the database gone — stays unhandled,
    and the sweeper hands it over again."""
    balance_crossings_handle(account_id=account_id)
