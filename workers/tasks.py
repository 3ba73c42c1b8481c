from celery import shared_task

from workers.runner import generation_run


@shared_task(name="generations.run")
def run_generation(generation_id: str) -> None:
    generation_run(generation_id)
