from celery import shared_task

from generations.sweeper import generations_sweep
from workers.runner import generation_run


@shared_task(name="generations.run")
def run_generation(generation_id: str) -> None:
    generation_run(generation_id)


@shared_task(name="hub.sweep")
def sweep() -> None:
    generations_sweep()
