"""A generation's task message built once per process and pushed by one LPUSH.

Replaces: Celery's `send_task` and kombu's producer (`publish`) for a task that takes its own id
as its one argument (hub.broker.task_send). Building a task message and publishing it through
kombu is ~10 % of an async submit's CPU in the web (bench async-c32, yappi: routing, the
protocol's header set, kombu's serializer and body encoding, its channel and connection checks),
though only three values change from one such message to the next. The rest of the message is
taken once per process from Celery's own `create_task_message` (so it follows the installed
Celery); the layout of kombu's Redis message (its envelope and properties) is written here.
tests/fastpaths/test_task_message.py holds the two messages equal, and runs the task both ways.
"""

import base64
import json
import os
import uuid

from hub.infra.fastpaths import FastPath

TASK_MESSAGE = FastPath("TASK_MESSAGE", "kombu", "5.7.0")

# By (task name, process): the headers every message of the task shares. Its reply_to is the
# sending thread's (Celery's app.thread_oid), read for each message as send_task does.
_SHARED: dict[tuple[str, int], dict] = {}
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def task_message(name: str, *, task_id: str, queue: str, headers: dict) -> str:
    from hub.celery import app

    shared = _SHARED.get((name, os.getpid())) or _shared(name)
    body = json.dumps([[task_id], {}, _EMBED]).encode()
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {**shared, "id": task_id, "root_id": task_id, "argsrepr": repr([task_id]), **headers},
            "properties": {
                "correlation_id": task_id,
                "reply_to": app.thread_oid,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def _shared(name: str) -> dict:
    """The headers Celery's own message for `name` holds beside the task's id (its origin names
    the process, hence one per process)."""
    from hub.celery import app

    marker = "hub-task-marker"
    # As send_task calls it for a task sent without options (ignore_result: None, not False).
    made = app.amqp.create_task_message(marker, name, [marker], {}, reply_to=app.thread_oid, ignore_result=None)
    shared = {key: value for key, value in made.headers.items() if key not in ("id", "root_id", "argsrepr")}
    _SHARED[(name, os.getpid())] = shared
    return shared
