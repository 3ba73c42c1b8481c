"""Invariants between the ledger and the generations; each problem is one readable line."""

from datetime import UTC, timedelta

from django.conf import settings
from django.db.models import Count, F, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from apikeys.selectors import usage_counters
from billing.selectors import generation_movements, ledger_drift
from generations.models import FINISHED, Generation, GenerationStatus


def reconcile() -> list[str]:
    problems = ledger_drift()
    movements = generation_movements()

    generations = Generation.objects.annotate(image_count=Count("images")).in_bulk(list(movements))
    overdue = timezone.now() - timedelta(seconds=settings.GENERATION_DEADLINE_MARGIN_SECONDS)
    for generation_id, moved in movements.items():
        charged, refunded = moved.charged, moved.refunded
        generation = generations.get(generation_id)
        if generation is None:
            problems.append(f"{generation_id}: ledger movement without a generation")
            continue
        if refunded > charged:
            problems.append(f"{generation_id}: refund {refunded} above charge {charged}")
        if charged != generation.credits_requested:
            problems.append(f"{generation_id}: charged {charged}, generation says {generation.credits_requested}")
        if refunded != generation.credits_refunded:
            problems.append(f"{generation_id}: refunded {refunded}, generation says {generation.credits_refunded}")
        if generation.status not in FINISHED and generation.deadline_at < overdue:
            problems.append(f"{generation_id}: charged but still {generation.status} past its deadline")
        if generation.status in (GenerationStatus.FAILED, GenerationStatus.CANCELED) and refunded != charged:
            problems.append(f"{generation_id}: {generation.status} but refunded {refunded} of {charged}")
        if generation.status == GenerationStatus.SUCCEEDED:
            expected = (generation.n - generation.image_count) * generation.price_per_image
            if generation.image_count == 0 or refunded != expected:
                problems.append(
                    f"{generation_id}: succeeded with {generation.image_count}/{generation.n} images"
                    f" but refunded {refunded} (expected {expected})"
                )

    uncharged = Generation.objects.exclude(pk__in=list(movements)).values_list("pk", flat=True)
    problems += [f"{generation_id}: generation without a charge" for generation_id in uncharged]
    orphans = Generation.objects.exclude(status=GenerationStatus.SUCCEEDED).filter(images__isnull=False).distinct()
    problems += [f"{g.pk}: {g.status} but has stored images" for g in orphans]
    return problems + _key_usage_drift()


def _key_usage_drift() -> list[str]:
    """Each key's usage counters (its monthly cap and usage table) equal what its generations
    were charged and refunded, per UTC day of creation."""
    sums = (
        Generation.objects.filter(api_key__isnull=False)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values_list("api_key_id", "day")
        .annotate(
            images=Sum("n"),
            images_refunded=Sum(F("credits_refunded") / F("price_per_image")),
            credits_charged=Sum("credits_requested"),
            credits_refunded=Sum("credits_refunded"),
        )
        .order_by()
    )
    expected = {(key_id, day): tuple(totals) for key_id, day, *totals in sums}
    counted = usage_counters()
    return [
        f"key {key} on {day}: usage counts {counted.get((key, day))}, generations say {expected.get((key, day))}"
        for key, day in sorted(set(expected) | set(counted))
        if expected.get((key, day)) != counted.get((key, day))
    ]
