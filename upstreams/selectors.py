"""What generations cost the operator, per day, model and upstream (the admin's cost report)."""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from generations.models import GenerationStatus
from upstreams.costs import COST_PLACES
from upstreams.models import UpstreamCall

OK = "ok"


@dataclass(frozen=True)
class CostRow:
    day: date  # UTC, of the calls
    model_id: str
    upstream_name: str
    calls: int  # every call, failed ones too
    images: int  # what the upstream delivered (and billed)
    credits: int  # what the generations it delivered were finally charged
    cost: Decimal | None  # by the upstream's prices at the time; None: a delivering call was not priced
    margin: Decimal | None  # credits × HUB_CREDIT_VALUE − cost; None without either


def cost_per_day(*, days: int) -> list[CostRow]:
    """Newest day first. A generation's credits count once, on the upstream of its last call that
    delivered (a failover's failed call before it costs nothing and earns nothing)."""
    calls = UpstreamCall.objects.filter(started_at__gte=timezone.now() - timedelta(days=days)).annotate(
        day=TruncDate("started_at")
    )
    keys = ("day", "model_id", "upstream_name")
    totals = calls.values(*keys).annotate(
        calls=Count("id"),
        images=Sum("images"),
        unpriced=Count("id", filter=Q(outcome=OK, cost__isnull=True)),
        total_cost=Sum("cost"),
    )
    later_delivery = UpstreamCall.objects.filter(
        generation_id=OuterRef("generation_id"), outcome=OK, started_at__gt=OuterRef("started_at")
    )
    earned = {
        tuple(row[key] for key in keys): row["credits"]
        for row in calls.filter(outcome=OK, generation__status=GenerationStatus.SUCCEEDED)
        .filter(~Exists(later_delivery))
        .values(*keys)
        .annotate(credits=Sum(F("generation__credits_requested") - F("generation__credits_refunded")))
    }
    rows = []
    for row in totals:
        credits = earned.get(tuple(row[key] for key in keys)) or 0
        cost = None if row["unpriced"] else (row["total_cost"] or Decimal(0)).quantize(COST_PLACES)
        value = settings.CREDIT_VALUE
        margin = None if cost is None or value is None else (credits * value - cost).quantize(COST_PLACES)
        rows.append(
            CostRow(
                row["day"],
                row["model_id"],
                row["upstream_name"],
                row["calls"],
                row["images"] or 0,
                credits,
                cost,
                margin,
            )
        )
    return sorted(rows, key=lambda row: (-row.day.toordinal(), row.model_id, row.upstream_name))
