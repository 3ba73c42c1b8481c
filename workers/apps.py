from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"

    def ready(self):
        from celery import signals

        from workers import checks  # noqa: F401 — registers the start-up check
        from workers.schedule import sweeps_start

        # Each Celery worker process, once ready, runs the periodic sweep's loop (workers.schedule).
        signals.worker_ready.connect(sweeps_start, weak=False)
