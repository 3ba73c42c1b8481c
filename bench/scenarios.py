"""The scenarios: what each starts, what it sends, and how its table is put together.

Every scenario starts its own stack (bench.stack) and tears it down before its table is
printed, so each table stands alone. Sync and async runs are compared with a floor measured
in the same run just before: the fake provider driven directly (sync), or the bench-only
floor endpoint on the same server (async).
"""

import hashlib
import json
import os
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from bench import measure
from bench.pngs import noise_png, side_for
from bench.report import Table, log_notes
from bench.seed import seed_history
from bench.stack import BODY, HUB_BIN, PROVIDER_KEY, Stack, http, pg_connections
from bench.stream_scenarios import run_stream
from bench.upstream_scenarios import run_upstream

SMALL_PNG = 64 * 1024
BIG_PNG = 3 * 2**19  # 1.5 MiB
FLOOR_KEY = hashlib.md5(b"1").hexdigest()  # row 1 of bench_floor


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # sync | async | poll | upload | history | stages | upstream | stream
    concurrency: int
    requests: int
    provider_latency: float
    png_bytes: int = SMALL_PNG
    time_limit: float = 600  # seconds after which no new request starts (and the poll phase's limit)
    ramp: float = 0  # seconds over which the clients start one after another (0: all at once)
    description: str = ""
    # kind "upstream" (bench.upstream_scenarios): tenant A's async burst, tenant B's sync calls,
    # the upstreams' limits configured, learned or configured with an outage of one key.
    a_requests: int = 0
    b_requests: int = 0
    upstream: str = ""  # configured | learned | outage
    outage_seconds: float = 60


SCENARIOS = {
    s.name: s
    for s in [
        Scenario(
            "sync-c32-0s",
            "sync",
            32,
            2000,
            0,
            time_limit=300,
            description="sync generations, 32 clients, instant provider: the hub's own overhead",
        ),
        Scenario(
            "sync-c200-5s",
            "sync",
            200,
            600,
            5,
            time_limit=300,
            description="sync, 200 clients, 5 s provider: how many waits the web tier holds",
        ),
        Scenario("sync-c1000-5s", "sync", 1000, 3000, 5, description="sync, 1000 clients, 5 s provider"),
        Scenario("sync-c1000-10s", "sync", 1000, 3000, 10, description="sync, 1000 clients, 10 s provider"),
        Scenario(
            "sync-c1000-30s",
            "sync",
            1000,
            3000,
            30,
            description="sync, 1000 clients, 30 s provider (wall-capped: new requests stop after 600 s)",
        ),
        Scenario(
            "sync-c200-5s-big",
            "sync",
            200,
            600,
            5,
            png_bytes=BIG_PNG,
            time_limit=300,
            description="sync, 200 clients, 5 s provider, 1.5 MiB PNGs: decode, S3 upload and answer size",
        ),
        Scenario(
            "async-c32",
            "async",
            32,
            2000,
            0,
            description="async submit (202), 32 clients, no generation worker, vs the floor endpoint",
        ),
        Scenario(
            "async-2000-poll",
            "poll",
            64,
            2000,
            1,
            time_limit=900,
            description="2000 async generations (64 clients, 1 s provider), then poll each until final; "
            "hub_reconcile afterwards",
        ),
        Scenario(
            "max-upload",
            "upload",
            1,
            1,
            0,
            time_limit=900,
            description="one async request with the model's maximum of ~50 MB reference images",
        ),
        Scenario(
            "stages",
            "stages",
            1,
            300,
            0,
            description="the CPU of each stage of a sync generation, stage by stage in one quiet hub process",
        ),
        Scenario(
            "history-1m",
            "history",
            32,
            2000,
            0,
            description="async-c32 and the floor on an empty database, then again after seeding a million "
            "past generations",
        ),
        Scenario(
            "stream-c16-2s",
            "stream",
            16,
            400,
            2,
            time_limit=300,
            description="sync generations, then the same streamed with partial_images=2 (16 clients, 2 s "
            "provider streaming its partials): the hub's CPU per generation",
        ),
        *(
            Scenario(
                name,
                "upstream",
                1,
                0,
                2,
                time_limit=1800,
                a_requests=2000,
                b_requests=10,
                upstream=variant,
                description=f"tenant A's async burst (default 2,000), then tenant B's sync calls one after another "
                f"(default 10); provider 2 s; two upstream keys of 20 concurrent calls each, {what}",
            )
            for name, variant, what in (
                ("noisy-neighbour", "configured", "their limits configured"),
                ("learned-limit", "learned", "their limits not configured (learned from 429s)"),
                ("outage", "outage", "configured; one key answers 500 for a while (default 60 s) from B's first call"),
            )
        ),
    ]
}


@dataclass(frozen=True)
class Context:
    """What every scenario of one command shares."""

    results_base: Path  # bench/results/<stamp>-<scenario>; .md, .json and -logs/ hang off it
    extra_env: dict[str, str]
    history: int
    rounds: int = 1  # async pairs: floor and hub in turn this many times (_async_pair)
    workers: int = 1  # generation worker processes (replicas of deploy/bin/worker)

    def stack(self, scenario: Scenario, *, worker: bool = True) -> Stack:
        return Stack(
            provider_latency=scenario.provider_latency,
            png_bytes=scenario.png_bytes,
            log_dir=self.log_dir,
            worker=worker,
            workers=self.workers,
            extra_env=self.extra_env,
        )

    @property
    def log_dir(self) -> Path:
        return self.results_base.with_name(self.results_base.name + "-logs")


def run(scenario: Scenario, ctx: Context) -> Table:
    load = os.getloadavg()
    pg_limit, pg_used = pg_connections()
    table = RUNNERS[scenario.kind](scenario, ctx)
    processes = (
        "deploy/bin/web (no worker)"
        if scenario.kind in ("async", "history", "stages")
        else "deploy/bin/web and " + (f"{ctx.workers} × deploy/bin/worker" if ctx.workers > 1 else "deploy/bin/worker")
    )
    env = " ".join(f"{k}={v}" for k, v in ctx.extra_env.items()) or "none"
    table.notes[:0] = [
        f"{scenario.description}.",
        f"hub: {processes} with DJANGO_SETTINGS_MODULE=bench.settings; extra env: {env}; "
        f"fake provider latency {scenario.provider_latency:g} s, PNG ~{scenario.png_bytes:,} bytes; "
        f"client timeout 300 s; new requests stop after {scenario.time_limit:g} s; "
        + (f"the clients start evenly over {scenario.ramp:g} s." if scenario.ramp else "all clients start at once."),
        f"machine: {os.cpu_count()} cores; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} before the "
        f"stack started; 'rest of machine' is CPU used by processes outside the bench (e.g. a test suite).",
        f"PostgreSQL (shared): max_connections {pg_limit}, {pg_used} client connections in use before the stack "
        f"started.",
    ]
    table.notes += [*log_notes(ctx.log_dir), f"process logs: {ctx.log_dir}"]
    return table


def _spec(url: str, body: dict, headers: dict, s: Scenario, **more) -> dict:
    return {
        "url": url,
        "body": json.dumps(body),
        "headers": {"Content-Type": "application/json", **headers},
        "concurrency": s.concurrency,
        "requests": s.requests,
        "time_limit": s.time_limit,
        "ramp": s.ramp,
        **more,
    }


def _compare(run: dict, floor: dict) -> None:
    """Ratio of req/s, and latency above the floor at the same percentiles."""
    run["floor_ratio"] = run["rps"] / floor["rps"] if floor["rps"] else None
    run["added_latency_s"] = {
        q: run["latency_s"][q] - floor["latency_s"][q]
        for q in ("p50", "p90", "p99")
        if run["latency_s"][q] is not None and floor["latency_s"][q] is not None
    }


def _provider_check(run: dict, ok_status: str) -> list[str]:
    delivered = run["statuses"].get(ok_status, 0)
    if run["provider_calls"] < delivered:
        return [
            f"WARNING: {delivered} generations answered {ok_status} but the fake provider saw only "
            f"{run['provider_calls']} calls: generations are not all going through it."
        ]
    return []


def run_sync(s: Scenario, ctx: Context) -> Table:
    with ctx.stack(s) as stack:
        provider = f"{stack.provider_url}/v1/images/generations"
        provider_auth = {"Authorization": f"Bearer {PROVIDER_KEY}"}
        floor = measure.run(stack, "provider floor", _spec(provider, BODY, provider_auth, s))
        hub = measure.run(stack, "hub sync", _spec(f"{stack.base_url}/api/v1/images/generations", BODY, stack.auth, s))
    _compare(hub, floor)
    return Table(s.name, "sync generations vs the provider floor", [floor, hub], notes=_provider_check(hub, "200"))


def _async_pair(stack: Stack, s: Scenario, suffix: str, rounds: int) -> tuple[dict, dict, list[str]]:
    """The floor, then the hub, `rounds` times in turn: the pair whose ratio is the median (the
    upper middle one for an even count), and a note with every round's ratio. Why rounds: the
    machine's speed drifts by tens of percent over a minute (the same code's floor served 439–552
    req/s in runs minutes apart), and one floor phase followed by one hub phase carries that drift
    into their ratio."""
    pairs = []
    for index in range(rounds):
        label = f"{suffix}, round {index + 1}" if rounds > 1 else suffix
        floor = measure.run(
            stack,
            f"floor endpoint{label}",
            _spec(f"{stack.base_url}/bench/floor", BODY, {"Authorization": f"Bearer {FLOOR_KEY}"}, s),
        )
        hub = measure.run(
            stack,
            f"hub async submit{label}",
            _spec(f"{stack.base_url}/api/v1/images/generations", {**BODY, "async": True}, stack.auth, s),
        )
        _compare(hub, floor)
        pairs.append((floor, hub))
    ratios = [hub["floor_ratio"] or 0.0 for _, hub in pairs]
    floor, hub = pairs[sorted(range(rounds), key=ratios.__getitem__)[rounds // 2]]
    notes = []
    if rounds > 1:
        each = ", ".join(f"{ratio:.3f}" for ratio in ratios)
        notes.append(
            f"{rounds} rounds{suffix} (floor, then hub, each {s.requests} requests): ratios to floor {each}; "
            f"median {statistics.median(ratios):.3f}; the columns{suffix} are the median round's."
        )
    return floor, hub, notes


def run_async(s: Scenario, ctx: Context) -> Table:
    with ctx.stack(s, worker=False) as stack:
        floor, hub, notes = _async_pair(stack, s, "", ctx.rounds)
    return Table(s.name, "async submit vs the floor endpoint", [floor, hub], notes=notes)


def run_poll(s: Scenario, ctx: Context) -> Table:
    with ctx.stack(s) as stack:
        body = {**BODY, "async": True}
        hub = measure.run(
            stack,
            "hub submit + poll",
            _spec(
                f"{stack.base_url}/api/v1/images/generations",
                body,
                stack.auth,
                s,
                collect="poll_url",
                poll={"interval": 1.0, "time_limit": s.time_limit},
            ),
        )
        reconcile = stack.manage("hub_reconcile", check=False)
    poll = hub["poll"]
    output = reconcile.stdout.decode().strip().splitlines()
    verdict = "clean" if reconcile.returncode == 0 else f"NOT clean (exit {reconcile.returncode})"
    table = Table(
        s.name,
        "async generations submitted, then polled until final",
        [hub],
        extra_rows=[
            (
                "time to all final s",
                [
                    f"{poll['time_to_all_final']:.1f}"
                    if poll["time_to_all_final"]
                    else f"not reached ({poll['unfinished']} unfinished)"
                ],
            ),
            ("final statuses", [" ".join(f"{k}×{v}" for k, v in sorted(poll["final"].items()))]),
            ("poll requests / rounds", [f"{poll['requests']} / {poll['rounds']}"]),
            ("poll HTTP statuses", [" ".join(f"{k}×{v}" for k, v in sorted(poll["http"].items()))]),
            ("hub_reconcile", [verdict]),
        ],
        notes=[f"hub_reconcile: {line}" for line in output[:5]],
    )
    table.notes += _provider_check(hub, "202")
    return table


def _int_settings(stack: Stack, *names: str) -> list[int]:
    """Hub settings' values, asked of the hub itself (the bench does not import app modules)."""
    out = stack.manage("diffsettings").stdout.decode()
    values = []
    for name in names:
        match = re.search(rf"^{name} = (\d+)", out, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"manage.py diffsettings does not show {name}")
        values.append(int(match.group(1)))
    return values


def run_upload(s: Scenario, ctx: Context) -> Table:
    with ctx.stack(s) as stack:
        max_bytes, max_pixels, max_total = _int_settings(
            stack, "REFERENCE_IMAGE_MAX_BYTES", "REFERENCE_IMAGE_MAX_PIXELS", "REFERENCE_IMAGE_MAX_TOTAL_PIXELS"
        )
        models = http("GET", f"{stack.base_url}/api/v1/models")[1]["data"]
        limit = next(m for m in models if m["id"] == BODY["model"])["reference_image_limit"]
        # The largest request the hub accepts: each file just under the byte cap, unless the
        # pixels of all files together (REFERENCE_IMAGE_MAX_TOTAL_PIXELS) bind first.
        budget = min(max_pixels, max_total // limit)
        target = min(max_bytes - 64 * 1024, int(budget * 3 * 0.97))  # noise RGB PNG ≈ 3 bytes/pixel
        side = side_for(target)
        if side * side > budget:
            raise RuntimeError(f"a {target}-byte noise PNG would have {side * side} pixels, over {budget}")
        reference = stack.tmp / "reference.png"
        reference.write_bytes(noise_png(target))
        size = reference.stat().st_size
        fields = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in {**BODY, "async": True}.items()}
        files = [
            {"name": "reference_image", "path": str(reference), "filename": f"ref{i}.png", "content_type": "image/png"}
            for i in range(limit)
        ]
        hub = measure.run(
            stack,
            "hub multipart upload",
            {
                "url": f"{stack.base_url}/api/v1/images/generations",
                "headers": stack.auth,
                "multipart": {"fields": fields, "files": files},
                "concurrency": s.concurrency,
                "requests": s.requests,
                "time_limit": s.time_limit,
                "ramp": s.ramp,
                "collect": "poll_url",
                "poll": {"interval": 1.0, "time_limit": s.time_limit},
            },
        )
    poll, web, worker = hub["poll"], hub["groups"]["web"], hub["groups"]["worker"]
    return Table(
        s.name,
        "maximum reference upload",
        [hub],
        extra_rows=[
            ("reference images", [f"{limit} × {size:,} bytes ({side}×{side} px)"]),
            ("web idle RSS MiB", [f"{web['rss_start_mib']:.1f}"]),
            ("web peak RSS increase MiB", [f"{web['rss_peak_mib'] - web['rss_start_mib']:.1f}"]),
            ("worker peak RSS increase MiB", [f"{worker['rss_peak_mib'] - worker['rss_start_mib']:.1f}"]),
            ("time to final s", [f"{poll['time_to_all_final']:.1f}" if poll["time_to_all_final"] else "not reached"]),
            ("final status", [" ".join(f"{k}×{v}" for k, v in poll["final"].items()) or "—"]),
        ],
    )


def run_history(s: Scenario, ctx: Context) -> Table:
    size = "1M" if ctx.history == 1_000_000 else f"{ctx.history:,}"
    with ctx.stack(s, worker=False) as stack:
        *empty, empty_notes = _async_pair(stack, s, ", empty db", ctx.rounds)
        seeded = seed_history(stack.db_url, ctx.history)
        *full, full_notes = _async_pair(stack, s, f", {size} history", ctx.rounds)
    ratios = [
        f"{after['rps'] / before['rps']:.3f}" if before["rps"] else "—"
        for before, after in zip(empty, full, strict=True)
    ]
    rows = ", ".join(f"{table} {count:,}" for table, count in seeded["rows"].items())
    return Table(
        s.name,
        f"async submit and floor, empty vs {size} past generations",
        [*empty, *full],
        extra_rows=[
            ("req/s ratio: with history ÷ empty db", ["", "", *ratios]),
        ],
        notes=[
            f"seeded in {seeded['insert_s']:.0f} s (+{seeded['vacuum_analyze_s']:.0f} s VACUUM ANALYZE): {rows}.",
            *empty_notes,
            *full_notes,
        ],
    )


def run_stages(s: Scenario, ctx: Context) -> Table:
    """bench/stages.py in the hub's virtualenv, against this stack (no web traffic, no worker)."""
    with ctx.stack(s, worker=False) as stack:
        done = stack.run(
            "stages",
            [str(HUB_BIN / "python"), "-m", "bench.stages", str(s.requests)],
            env={"BENCH_API_KEY": stack.key},
        )
    measured = json.loads(done.stdout.decode().strip().splitlines()[-1])
    stages, whole = measured["stages"], measured["whole_submit_cpu_ms"]
    columns = [
        {"label": "side"},
        {"label": "CPU ms per call"},
        {"label": "wall ms per call"},
        {"label": "PostgreSQL CPU ms per call"},
    ]
    rows = [(name, [side, f"{cpu:.3f}", f"{wall:.3f}", f"{db:.3f}"]) for name, side, cpu, wall, _, db in stages]
    (submit, submit_db), (worker, worker_db) = (
        (
            sum(cpu for _, side, cpu, _, summed, _ in stages if summed and side == part),
            sum(db for _, side, _, _, summed, db in stages if summed and side == part),
        )
        for part in ("web", "worker")
    )
    rows += [
        ("web stages of an async submit (sum)", ["web", f"{submit:.3f}", "", f"{submit_db:.3f}"]),
        ("Django, DRF and the response around them", ["web", f"{whole - submit:.3f}", "", ""]),
        ("worker stages of a generation (sum)", ["worker", f"{worker:.3f}", "", f"{worker_db:.3f}"]),
    ]
    return Table(
        s.name,
        f"CPU per stage, {s.requests} calls each, one after another",
        columns,
        extra_rows=rows,
        notes=[
            "Each stage runs on its own in one process (gevent-patched, as the web and the worker): what it "
            "costs, without the event loop's sharing, Celery's consumer, gunicorn's HTTP or the logs of a "
            "whole request. A bench run's `hub CPU ms/request` adds those.",
            "PostgreSQL CPU: the bench database's client backends (the pool's connections; not autovacuum), "
            "over the same calls.",
        ],
        standard_rows=False,
    )


RUNNERS = {
    "sync": run_sync,
    "async": run_async,
    "poll": run_poll,
    "upload": run_upload,
    "history": run_history,
    "stages": run_stages,
    "upstream": run_upstream,
    "stream": run_stream,
}
