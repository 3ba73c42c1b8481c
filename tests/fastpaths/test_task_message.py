"""TASK_MESSAGE (hub/infra/fastpaths/task_message.py): a generation's run pushed by one LPUSH is the
message Celery's send_task puts on the queue, and a worker runs a generation sent either way."""

import base64
import json
import threading
import uuid

import pytest
from django.conf import settings

from hub.broker import task_send
from tests.fastpaths.conftest import fast_path

pytestmark = pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis://"), reason="the Redis broker (suite on its services)"
)


def _sent(on: bool, task_id: str, headers: dict) -> dict:
    from hub.infra.redis_client import redis_client

    queue = f"hub-fastpath-task-{uuid.uuid4().hex}"
    with fast_path("TASK_MESSAGE", on):
        task_send(name="generations.run", task_id=task_id, queue=queue, headers=headers, retry_policy={})
    raw = redis_client().lpop(queue)
    message = json.loads(raw)
    assert message["properties"].pop("delivery_info") == {"exchange": "", "routing_key": queue}
    assert uuid.UUID(message["properties"].pop("delivery_tag"))  # random per message
    return message


def test_the_pushed_message_is_celerys():
    task_id, headers = f"gen_{uuid.uuid4().hex[:24]}", {"request_id": "req_fast_path"}
    fast, library = _sent(True, task_id, headers), _sent(False, task_id, headers)
    assert fast == library
    assert json.loads(base64.b64decode(fast["body"]))[0] == [task_id]
    assert fast["headers"]["request_id"] == "req_fast_path"


def test_each_thread_sends_its_own_reply_to_as_celery_does():
    """The process's first message sent from another thread (a gevent or test-server thread)
    does not give this thread its reply_to: Celery's is per thread (app.thread_oid)."""
    task_id, headers = f"gen_{uuid.uuid4().hex[:24]}", {}
    other: list[dict] = []
    thread = threading.Thread(target=lambda: other.append(_sent(True, task_id, headers)))
    thread.start()
    thread.join()
    fast, library = _sent(True, task_id, headers), _sent(False, task_id, headers)
    assert fast == library
    assert other[0]["properties"]["reply_to"] != fast["properties"]["reply_to"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_worker_runs_a_generation_sent_either_way(api, customer, celery_worker):
    _, _, auth = customer
    body = {"model": "gpt-image-2", "prompt": "a lighthouse", "size": "1024x1024", "quality": "low", "n": 1}
    answers = []
    for on in (True, False):
        with fast_path("TASK_MESSAGE", on):
            response = api.post("/api/v1/images/generations", data=body, format="json", **auth)
        assert response.status_code == 200, response.content
        answers.append(response.json())
    for answer in answers:
        assert (answer["status"], answer["usage"], len(answer["images"])) == (
            "succeeded",
            {"credits": 2, "credits_requested": 2},
            1,
        )
