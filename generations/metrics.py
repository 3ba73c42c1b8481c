"""The generations' gauges, read at scrape time (hub.infra.metrics.SCRAPE_COLLECTORS)."""

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily

from generations.models import Generation, GenerationStatus

UNFINISHED = (GenerationStatus.QUEUED, GenerationStatus.RUNNING)


class UnfinishedCollector:
    """Generations queued or running right now, by status: one grouped query per scrape, served
    by the (status, deadline_at) index."""

    def collect(self):
        family = GaugeMetricFamily("hub_generations_unfinished", "Generations queued or running", labels=["status"])
        rows = Generation.objects.filter(status__in=UNFINISHED).values("status").order_by()
        counts = dict(rows.annotate(count=Count("pk")).values_list("status", "count"))
        for status in UNFINISHED:
            family.add_metric([status], counts.get(status, 0))
        yield family
