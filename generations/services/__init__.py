"""Writes of the generation life cycle: a request's submit (create + charge, Idempotency-Key,
its sync wait) and what happens to the generation after (enqueue: to the broker; lifecycle: claim, finish,
fail, cancel, refund)."""

from generations.services.enqueue import FAIR_HEADER, RUN_TASK_NAME, generation_enqueue, generation_requeue
from generations.services.idempotency import idempotency_keys_expire
from generations.services.lifecycle import (
    ProviderCall,
    Row,
    StoredImage,
    generation_cancel,
    generation_claim,
    generation_fail,
    generation_finalize,
    generation_leases_renew,
)
from generations.services.precheck import generation_precheck
from generations.services.submit import SubmitOutcome, generation_create, generation_submit
from generations.services.wait import connection_release, generation_wait

__all__ = [
    "FAIR_HEADER",
    "RUN_TASK_NAME",
    "ProviderCall",
    "Row",
    "StoredImage",
    "SubmitOutcome",
    "connection_release",
    "generation_cancel",
    "generation_claim",
    "generation_create",
    "generation_enqueue",
    "generation_fail",
    "generation_finalize",
    "generation_leases_renew",
    "generation_precheck",
    "generation_requeue",
    "generation_submit",
    "generation_wait",
    "idempotency_keys_expire",
]
