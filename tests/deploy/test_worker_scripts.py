"""deploy/bin/worker and deploy/bin/housekeeping run without Celery's worker-to-worker events
(gossip, mingle, heartbeats: the hub uses none, and they cost every idle worker CPU and Redis
traffic), while the health check's remote control (`celery inspect ping`) still answers."""

import subprocess
import time
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings

from tests.conftest import HUB_BIN, HUB_PYTHON, ROOT, WorkerProcess

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="worker events travel over the Redis broker")
HEARTBEAT_SECONDS = 2  # Celery's default interval, when heartbeats are on


class ScriptWorker(WorkerProcess):
    """A worker exactly as the image starts it: `deploy/bin/<script>`, not the tests' own command."""

    def __init__(self, script: str):
        super().__init__(name=script, env_overrides={"HUB_BIN": str(HUB_BIN), "CELERY_WORKER_CONCURRENCY": "4"})
        self.args = [str(ROOT / "deploy" / "bin" / script)]


@pytest.mark.parametrize("script", ["worker", "housekeeping"])
def test_a_deployed_worker_sends_no_events_and_answers_its_health_check(script):
    events = redis.Redis.from_url(settings.REDIS_URL).pubsub()
    # kombu's fanout channels of Celery's event exchange on the worker's broker database (a channel
    # is seen by every database's subscribers: the prefix keeps other runs' workers out)
    database = urlsplit(settings.CELERY_BROKER_URL).path.strip("/") or "0"
    events.psubscribe(f"/{database}.celeryev/*")
    worker = ScriptWorker(script).start()
    try:
        health = subprocess.run(
            [HUB_PYTHON, "deploy/bin/healthcheck", script],
            cwd=ROOT,
            env=worker.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert health.returncode == 0, health.stderr
        time.sleep(HEARTBEAT_SECONDS + 1)
        published = []
        while (message := events.get_message(timeout=0.2)) is not None:
            if message["type"] == "pmessage":
                published.append(message["channel"])
        assert published == []
    finally:
        worker.stop()
        events.close()
