"""The CPU of each stage of one sync generation, measured stage by stage in one hub process.

    .venv/bin/python -m bench run stages [--requests N]

Run by the `stages` scenario (bench/scenarios.py) in the hub's own virtualenv, with the stack's
environment (PostgreSQL, Redis, the S3-protocol server, the fake provider), under gevent as the
web and the worker run. Each stage is the hub's own function a request or a task calls, run N
times one after another (one warm-up first) on a quiet process: its CPU (`time.process_time`)
and wall time per call, with no other request competing — so what a stage costs, not how the
process shares a core. The whole async submit through Django's WSGI handler is measured too:
what it costs beyond its stages is the framework's part (middleware, DRF, the response).

With `--env STAGES_PROFILE_DIR=DIR` (and yappi in the hub's virtualenv: `.venv-hub/bin/pip install
yappi`) each stage's calls are profiled by yappi's CPU clock into DIR/<stage>.pstat, for the
standard library's pstats; the figures of such a run include the profiler's own cost.

Prints one JSON object on its last line: {"stages": [[name, side, cpu_ms, wall_ms, summed], ...],
"whole_submit_cpu_ms": …}.
"""

from gevent import monkey

monkey.patch_all()

import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from itertools import count  # noqa: E402

import django  # noqa: E402

django.setup()

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.db import connection  # noqa: E402

from apikeys.services import api_key_authenticate  # noqa: E402
from bench import procstat  # noqa: E402
from bench.scenarios import FLOOR_KEY  # noqa: E402
from generations import completion, services  # noqa: E402
from generations.apis import GenerationOutput  # noqa: E402
from generations.models import Generation  # noqa: E402
from generations.services import submit  # noqa: E402
from hub.infra import storage  # noqa: E402
from workers.providers import ProviderRequest, provider_for  # noqa: E402
from workers.runner import image_shape  # noqa: E402

PRICED = {"model_id": "gpt-image-2", "size": "1024x1024", "quality": "low", "n": 1}
WHOLE_SUBMIT = "whole async submit through Django (WSGI)"  # the framework's part is this minus the web's stages
SUBMIT = {"model": "gpt-image-2", "prompt": "bench", "size": "1024x1024", "quality": "low", "n": 1, "async": True}


def database_cpu_seconds() -> float:
    """CPU so far of this database's PostgreSQL client backends (the server runs on this machine):
    the pool's connections, which live through the whole run. Not autovacuum's workers, which
    analyze the tables a stage has just filled."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'"
        )
        pids = {pid for (pid,) in cursor.fetchall()}
    return sum(proc.cpu_ticks for pid, proc in procstat.processes().items() if pid in pids) / procstat.TICK


def measure(name: str, side: str, call, n: int, results: list, *, summed: bool = True) -> None:
    """`summed`: the stage is one of the side's stages of a generation (the web's of an async
    submit), added up in the table; a False one is shown beside them."""
    call()  # warm-up: first-use costs (clients, compiled queries) are not per generation
    profile_dir = os.environ.get("STAGES_PROFILE_DIR")
    if profile_dir:
        import yappi

        yappi.clear_stats()
        yappi.set_clock_type("cpu")
        yappi.start(builtins=True)
    db, cpu, wall = database_cpu_seconds(), time.process_time(), time.perf_counter()
    for _ in range(n):
        call()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if profile_dir:
        yappi.stop()
        slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
        yappi.get_func_stats().save(os.path.join(profile_dir, f"{slug}.pstat"), type="pstat")
    db = database_cpu_seconds() - db
    results.append([name, side, 1000 * cpu / n, 1000 * wall / n, summed, 1000 * db / n])
    print(
        f"{side:6} {name:44} {1000 * cpu / n:7.3f} ms CPU {1000 * wall / n:7.3f} ms wall"
        f" {1000 * db / n:7.3f} ms PostgreSQL",
        file=sys.stderr,
    )


def wsgi_post(app, path: str, bearer: str, expect: str):
    """One POST of the async submit's JSON body through Django's WSGI handler, as gunicorn makes it."""
    body = json.dumps(SUBMIT).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Bearer {bearer}",
        "wsgi.url_scheme": "http",
    }

    def post():
        status = []
        b"".join(app({**environ, "wsgi.input": io.BytesIO(body)}, lambda s, h, exc_info=None: status.append(s)))
        if not status[0].startswith(expect):
            raise RuntimeError(f"{path} answered {status[0]}")

    return post


def main(n: int, raw_key: str) -> list:
    results: list = []
    key = api_key_authenticate(raw_key)
    owner = key.owner

    measure("api key authentication", "web", lambda: api_key_authenticate(raw_key), n, results)
    measure(
        "precheck (limits, balance)",
        "web",
        lambda: services.generation_precheck(
            owner=owner, api_key=key, reference_count=0, idempotency_key=None, **PRICED
        ),
        n,
        results,
    )
    created: list[str] = []
    enqueue = submit.generation_enqueue
    submit.generation_enqueue = lambda **kwargs: None  # the charge alone; the publish is measured next
    try:
        measure(
            "create + charge transaction",
            "web",
            lambda: created.append(
                services.generation_create(
                    owner=owner, api_key=key, references=[], is_async=False, prompt="bench", **PRICED
                ).id
            ),
            n,
            results,
        )
    finally:
        submit.generation_enqueue = enqueue
    measure("Celery publish", "web", lambda: enqueue(generation_id=created[0], stamp=False), n, results)

    to_claim = iter(created)
    claimed: list[Generation] = []
    measure(
        "claim", "worker", lambda: claimed.append(services.generation_claim(generation_id=next(to_claim))), n, results
    )
    provider = provider_for("openai")
    request = ProviderRequest(
        model="gpt-image-2",
        prompt="bench",
        size="1024x1024",
        quality="low",
        n=1,
        deadline=time.monotonic() + 3600,
        references=[],
    )
    image = provider.generate(request).images[0]
    measure("provider call (plain POST; edits: SDK)", "worker", lambda: provider.generate(request), n, results)
    measure("image check (format, size, CRCs)", "worker", lambda: image_shape(image), n, results)
    index = count()
    measure(
        "image upload (S3)",
        "worker",
        lambda: storage.object_save(key=f"generations/bench/{next(index)}.png", data=image, content_type="image/png"),
        n,
        results,
    )
    to_finish = iter(claimed)

    def finalize():
        generation = next(to_finish)
        stored = services.StoredImage(0, f"generations/{generation.id}/0.png", "image/png", 1024, 1024, len(image))
        services.generation_finalize(generation_id=generation.id, attempt=generation.attempts, images=[stored])

    measure("finalize (+ completion publish)", "worker", finalize, n, results)
    measure("completion publish alone", "worker", lambda: completion.publish_done(created[0]), n, results, summed=False)
    done = Generation.objects.get(pk=created[-1])
    measure(
        "finished read + answer body (+ presigned URL)",
        "web",
        # As a sync request's wait reads its finished row, then answers with it.
        lambda: GenerationOutput.data(services.generation_wait(generation=done), root="http://127.0.0.1"),
        n,
        results,
        summed=False,  # a sync answer's, not a submit's
    )
    handler = WSGIHandler()
    measure(
        WHOLE_SUBMIT,
        "web",
        wsgi_post(handler, "/api/v1/images/generations", raw_key, "202"),
        n,
        results,
        summed=False,
    )
    measure(
        "whole floor request through Django (WSGI)",
        "web",
        wsgi_post(handler, "/bench/floor", FLOOR_KEY, "202"),
        n,
        results,
        summed=False,
    )
    return results


if __name__ == "__main__":
    stages = main(int(sys.argv[1]), os.environ["BENCH_API_KEY"])
    whole = next(cpu for name, _, cpu, *_ in stages if name == WHOLE_SUBMIT)
    print(json.dumps({"stages": stages, "whole_submit_cpu_ms": whole}))
