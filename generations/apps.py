from django.apps import AppConfig


class GenerationsConfig(AppConfig):
    name = "generations"

    def ready(self):
        from generations.metrics import UnfinishedCollector
        from hub.infra.metrics import SCRAPE_COLLECTORS

        SCRAPE_COLLECTORS.append(UnfinishedCollector())
