from django.apps import AppConfig


class UpstreamsConfig(AppConfig):
    name = "upstreams"

    def ready(self):
        from hub.infra.metrics import SCRAPE_COLLECTORS
        from upstreams import checks  # noqa: F401 — registers the start-up check
        from upstreams.metrics import UpstreamStateCollector

        SCRAPE_COLLECTORS.append(UpstreamStateCollector())
