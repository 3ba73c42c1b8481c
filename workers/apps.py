from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"

    def ready(self):
        from celery import signals

        from workers import checks  # noqa: F401 — registers the start-up check
        from workers.schedule import sweeps_start

        # Each Celery worker process, once ready, runs the periodic sweep's loop (workers.schedule).
        signals.worker_ready.connect(sweeps_start, weak=False)
        # The process that runs tasks (the worker itself with the gevent and threads pools, each
        # prefork child) makes what its first generation would, then freezes its start-up objects.
        signals.worker_ready.connect(_warm_up_and_freeze_unless_prefork, weak=False)
        signals.worker_process_init.connect(_warm_up_and_freeze, weak=False)


def _warm_up_and_freeze_unless_prefork(sender, **kwargs) -> None:
    """worker_ready, sent by the consumer: a prefork parent runs no task (its children warm up on
    worker_process_init), so it builds no client it would never use."""
    from celery.concurrency.prefork import TaskPool as PreforkPool

    if not isinstance(sender.pool, PreforkPool):
        _warm_up_and_freeze()


def _warm_up_and_freeze(**kwargs) -> None:
    from hub.infra import storage
    from hub.infra.gcfreeze import freeze_startup_objects
    from workers import providers

    storage.warm_up()
    providers.warm_up()
    freeze_startup_objects()
