"""Auto top-up the whole way, across processes: a generation submitted through the API charges the
balance under the threshold; after its commit the crossing is handed to the housekeeping queue,
and a real worker process buys the pack from the fake Stripe."""

import json

import pytest

from billing.models import CreditAccount, Purchase
from tests.billing.stripe_helpers import autotopup_on, make_pack
from tests.conftest import WorkerProcess, purge_queues, until
from tests.factories import bearer, make_key, make_user
from tests.reconcile import assert_reconciled

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.slow
def test_a_generation_charged_under_the_threshold_is_topped_up_by_a_housekeeping_worker(
    api, fake_stripe, unconsumed_queue, settings
):
    user = make_user(credits=40)
    autotopup_on(fake_stripe, user, make_pack(credits=40), threshold=30)
    # A queue of the test's own: a session worker (started by an earlier test, without Stripe's
    # settings) consumes the run's housekeeping queue and would take the crossing.
    settings.HOUSEKEEPING_QUEUE = queue = f"{settings.HOUSEKEEPING_QUEUE}-topup"
    purge_queues(queue)
    stripe = {
        "HUB_HOUSEKEEPING_QUEUE": queue,
        "STRIPE_SECRET_KEY": fake_stripe.api_key,
        "STRIPE_WEBHOOK_SECRET": fake_stripe.webhook_secret,
        "STRIPE_API_BASE": fake_stripe.base_url,
    }
    worker = WorkerProcess(name="housekeeping", queues=queue, env_overrides=stripe).start()
    try:
        body = {"model": "gpt-image-2", "prompt": "p", "size": "1024x1024", "quality": "high", "n": 2, "async": True}
        response = api.post(
            "/api/v1/images/generations",
            data=json.dumps(body),
            content_type="application/json",
            **bearer(make_key(user)),
        )
        assert response.status_code == 202, response.content  # 40 → 24: under 30
        assert until(lambda: Purchase.objects.filter(status="paid").exists(), timeout=90), worker.output()[-3000:]
    finally:
        worker.stop()
    assert CreditAccount.objects.get(user=user).balance == 64
    assert len(fake_stripe.payment_intents) == 1
    assert Purchase.objects.get().kind == "auto_topup"
    assert_reconciled()
