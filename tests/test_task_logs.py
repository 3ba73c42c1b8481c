"""Celery's success line for each generation task is dropped (the worker's own line for the
generation says how it ended); its other lines, and other tasks' successes, stay
(hub.infra.logs.DropGenerationTaskSuccess, LOGGING in hub.settings)."""

import logging

from celery.app import trace


def _context(task_name: str, task_id: str) -> dict:
    return {"id": task_id, "name": task_name, "return_value": "None", "runtime": 0.5, "args": "[]", "kwargs": "{}"}


def test_only_the_generation_task_success_line_is_dropped(caplog):
    with caplog.at_level(logging.INFO, logger="celery.app.trace"):
        trace.info(trace.LOG_SUCCESS, _context("generations.run", "gen_1"))
        trace.info(trace.LOG_SUCCESS, _context("webhooks.deliver", "whd_1"))
        logging.getLogger("celery.app.trace").info(
            "Task %(name)s[%(id)s] retry: %(exc)s", {"name": "generations.run", "id": "gen_2", "exc": "Retry in 1s"}
        )
    assert [record.getMessage() for record in caplog.records] == [
        "Task webhooks.deliver[whd_1] succeeded in 0.5s: None",
        "Task generations.run[gen_2] retry: Retry in 1s",
    ]
