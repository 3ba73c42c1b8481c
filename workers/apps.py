from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"

    def ready(self):
        from workers import checks  # noqa: F401 — registers the start-up check
