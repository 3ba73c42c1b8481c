from celery import shared_task

from generations.services import RUN_TASK_NAME
from generations.sweeper import generations_sweep
from workers.runner import generation_run


@shared_task(name=RUN_TASK_NAME)
def run_generation(generation_id: str) -> None:
    generation_run(generation_id)


@shared_task(name="hub.sweep")
def sweep() -> None:
    generations_sweep()
