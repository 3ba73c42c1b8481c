"""The sweeper and the state machine: overdue work is failed and refunded once, and a late
worker cannot finish (or refund) a generation a second time."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from billing.models import CreditAccount, LedgerEntry
from generations.models import Generation
from generations.services import StoredImage, generation_claim, generation_finalize
from generations.sweeper import generations_sweep
from tests.factories import create_generation, make_user
from tests.reconcile import assert_reconciled

pytestmark = pytest.mark.django_db


def _create(user, n=2):
    return create_generation(user, n=n, quality="high", prompt="p")


def test_overdue_running_generation_is_failed_and_refunded_once():
    user = make_user(credits=100)
    generation = _create(user)
    claimed = generation_claim(generation_id=generation.id)
    Generation.objects.filter(pk=generation.id).update(deadline_at=timezone.now() - timedelta(minutes=5))

    report = generations_sweep()
    assert report.timed_out == [generation.id]
    assert generations_sweep().timed_out == []  # a second sweep changes nothing
    generation.refresh_from_db()
    assert (generation.status, generation.error_code, generation.credits_refunded) == ("failed", "timeout", 16)

    # The hung worker wakes up later and tries to finish: ignored, no second refund.
    late = generation_finalize(
        generation_id=generation.id, attempt=claimed.attempts, images=[StoredImage(0, "k", "image/png", 1, 1, 1)]
    )
    assert late.status == "failed"
    assert not generation.images.exists()
    assert LedgerEntry.objects.filter(generation_id=generation.id, kind="refund").count() == 1
    assert CreditAccount.objects.get(user=user).balance == 100
    assert_reconciled()


def test_generation_queued_past_its_deadline_is_failed():
    user = make_user(credits=100)
    generation = _create(user, n=1)
    Generation.objects.filter(pk=generation.id).update(deadline_at=timezone.now() - timedelta(minutes=5))
    assert generations_sweep().timed_out == [generation.id]
    assert CreditAccount.objects.get(user=user).balance == 100


def test_second_claim_of_a_running_generation_is_refused():
    generation = _create(make_user(credits=100))
    assert generation_claim(generation_id=generation.id) is not None
    assert generation_claim(generation_id=generation.id) is None  # duplicate delivery
    assert Generation.objects.get(pk=generation.id).attempts == 1


def test_lost_attempt_is_requeued_with_a_new_fencing_token(django_capture_on_commit_callbacks):
    generation = _create(make_user(credits=100))
    first = generation_claim(generation_id=generation.id)
    Generation.objects.filter(pk=generation.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert generations_sweep().requeued == [generation.id]
    second = generation_claim(generation_id=generation.id)
    assert second.attempts == first.attempts + 1
    stale = generation_finalize(generation_id=generation.id, attempt=first.attempts, images=[])
    assert stale.status == "running"  # the old attempt's verdict is ignored


def test_sweeper_expires_due_credit_grants():
    from billing.models import CreditGrant
    from billing.services import account_get_or_create, credits_grant

    user = make_user(credits=10)
    grant = credits_grant(
        account=account_get_or_create(user=user), amount=5, expires_at=timezone.now() + timedelta(days=1)
    )
    CreditGrant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert generations_sweep().expired_credits == 5
    assert CreditAccount.objects.get(user=user).balance == 10


def test_a_generation_still_queued_long_after_it_was_sent_is_sent_again(unconsumed_queue):
    """A task that failed for good before its claim, or a lost message, leaves the row queued
    with `enqueued_at` set: the sweeper hands it to the broker again."""
    user = make_user(credits=100)
    stale, fresh = _create(user, n=1), _create(user, n=1)
    long_ago = timezone.now() - timedelta(seconds=settings.GENERATION_RESEND_AFTER_SECONDS + 5)
    Generation.objects.filter(pk=stale.id).update(enqueued_at=long_ago)
    Generation.objects.filter(pk=fresh.id).update(enqueued_at=timezone.now())
    report = generations_sweep()
    assert report.sent == [stale.id]
    assert Generation.objects.get(pk=stale.id).enqueued_at > long_ago
    assert generations_sweep().sent == []  # sent again once, not on every sweep
