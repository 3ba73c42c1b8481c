"""A process freezes its start-up objects once it has built what its first request would, and
runs full collections less often (hub.infra.gcfreeze): the garbage collector's full collections then
skip those objects. Each check runs in a fresh interpreter, as the web and a worker start."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.infra.gcfreeze import FULL_AFTER_YOUNGER

ROOT = Path(__file__).resolve().parent.parent

# What the first S3 presign and the first OpenAI provider built when nothing was warm: ~50,000
# and ~60,000 tracked objects. Warmed up before the freeze, the same calls make a handful.
FEW = 2_000

PROBE = """
import gc, json, sys
{start}
frozen = gc.get_freeze_count()
before = len(gc.get_objects())
{first_use}
gc.collect()
print(json.dumps({{"frozen": frozen, "made": len(gc.get_objects()) - before, "thresholds": gc.get_threshold()}}))
"""


def _run(tmp_path, start: str, first_use: str, **env) -> dict:
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "HUB_VAR_DIR": str(tmp_path / "var"),
        "AWS_STORAGE_BUCKET_NAME": "hub-gcfreeze",
        "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9",  # presigning needs no server
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        **env,
    }
    code = PROBE.format(start=start, first_use=first_use)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_web_builds_its_s3_signer_before_it_freezes(tmp_path):
    probe = _run(
        tmp_path,
        "import hub.wsgi",
        "from hub.infra import storage; storage.object_url('generations/gen_x/0.png', base_url='http://hub')",
    )
    assert probe["frozen"] > 50_000
    assert probe["made"] < FEW, probe
    assert probe["thresholds"][2] == FULL_AFTER_YOUNGER


def test_a_worker_builds_its_provider_and_storage_before_it_freezes(tmp_path):
    start = """
import django, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
django.setup()
from workers.apps import _warm_up_and_freeze
_warm_up_and_freeze()
"""
    first_use = """
from django.conf import settings
from hub.infra import storage
from workers.providers import provider_for
provider_for(settings.IMAGE_PROVIDER)
storage.object_url('generations/gen_x/0.png', base_url='http://hub')
"""
    probe = _run(tmp_path, start, first_use, IMAGE_PROVIDER="openai", OPENAI_API_KEY="sk-test")
    assert probe["frozen"] > 50_000
    assert probe["made"] < FEW, probe
    assert probe["thresholds"][2] == FULL_AFTER_YOUNGER


@pytest.mark.slow
def test_a_prefork_parent_builds_no_clients_its_children_do(tmp_path):
    """worker_ready in a prefork parent (its children run the tasks) neither warms up nor freezes;
    sent by the consumer of any other pool, it does both."""
    start = """
import django, os
from types import SimpleNamespace
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
django.setup()
from celery.concurrency import get_implementation
from workers.apps import _warm_up_and_freeze_unless_prefork
_warm_up_and_freeze_unless_prefork(sender=SimpleNamespace(pool=get_implementation("prefork")(limit=1)))
"""
    first_use = """
from django.conf import settings
from workers.providers import provider_for
provider_for(settings.IMAGE_PROVIDER)
"""
    parent = _run(tmp_path, start, first_use, IMAGE_PROVIDER="openai", OPENAI_API_KEY="sk-test")
    assert parent["frozen"] == 0
    assert parent["made"] > 10 * FEW, parent  # the provider was still to be built
    threads = _run(
        tmp_path, start.replace('"prefork"', '"threads"'), first_use, IMAGE_PROVIDER="openai", OPENAI_API_KEY="sk-test"
    )
    assert threads["frozen"] > 50_000
    assert threads["made"] < FEW, threads
