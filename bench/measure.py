"""One measured load phase: the load generator as a child process, everything else sampled.

While bench.loadgen runs, /proc and pg_stat_activity are read every ~0.5 s: CPU and peak RSS of
the web and worker process trees, of the bench database's PostgreSQL backends, of
Redis, moto and the fake provider, of this runner (the sampler itself), and the machine's busy
time. The load generator's own CPU comes exactly from wait4()'s rusage. The hub's idle memory is
what its process trees hold when the phase opens, before the first request: RSS and PSS.
"""

import json
import math
import os
import subprocess
import time
from collections import Counter

import psycopg

from bench import procstat
from bench.stack import PG_ADMIN_URL, PYTHON, REPO, Stack

SAMPLE_EVERY = 0.5
HUB_GROUPS = ("web", "worker")


class PgActivity:
    """Connections to the bench database and to the whole server, the bench backends' pids, and
    how many of them wait on a lock (e.g. the row lock of the one account every charge takes)."""

    def __init__(self, db_name: str):
        self.db_name = db_name
        self.conn = psycopg.connect(PG_ADMIN_URL, autocommit=True)
        self.pids: set[int] = set()
        self.peak_db = self.peak_server = self.peak_lock_waits = 0
        self.lock_waits_total = self.samples = 0

    def sample(self) -> None:
        server, db, lock_waits, pids = self.conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE datname = %(db)s),"
            " count(*) FILTER (WHERE datname = %(db)s AND wait_event_type = 'Lock'),"
            " coalesce(array_agg(pid) FILTER (WHERE datname = %(db)s), '{}')"
            " FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            {"db": self.db_name},
        ).fetchone()
        self.pids = set(pids)
        self.peak_db, self.peak_server = max(self.peak_db, db), max(self.peak_server, server)
        self.peak_lock_waits = max(self.peak_lock_waits, lock_waits)
        self.lock_waits_total += lock_waits
        self.samples += 1

    def close(self) -> None:
        self.conn.close()


def _groups(stack: Stack, pg: PgActivity) -> dict:
    trees = {
        "web": ["web"],
        "worker": [name for name, _ in stack.worker_names()],
        "redis": ["redis"],
        "moto": ["moto"],
        "provider": ["provider"],
    }
    groups = {}
    for group, names in trees.items():
        roots = [procstat.tree(pid) for pid in map(stack.pid, names) if pid]
        groups[group] = lambda table, roots=roots: set().union(*(root(table) for root in roots))
    groups["postgres"] = lambda table: pg.pids
    groups["runner"] = lambda table: {os.getpid()}
    return groups


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _rps_99(samples: list) -> float | None:
    """Requests/s over the first 99% of answers: a few stragglers (e.g. timeouts) do not hide
    the throughput of the rest."""
    if not samples:
        return None
    count = math.ceil(0.99 * len(samples))
    done_at = sorted(start + latency for start, latency, _ in samples)[count - 1]
    return count / done_at if done_at else None


def _wait_sampling(child: subprocess.Popen, pg: PgActivity, sampler: procstat.Sampler):
    """Sample every SAMPLE_EVERY s until the child exits; its wait status and rusage."""
    last_sample = time.monotonic()
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            pg.sample()
            return status, usage
        time.sleep(0.05)
        if time.monotonic() - last_sample >= SAMPLE_EVERY:
            pg.sample()
            sampler.sample()
            last_sample = time.monotonic()


def run(stack: Stack, label: str, spec: dict) -> dict:
    """Run the load generator with `spec` and return what was measured (see report.ROWS)."""
    spec = {"method": "POST", "headers": {}, "timeout": 300, **spec}
    spec_path, result_path = stack.tmp / f"{label}.spec.json", stack.tmp / f"{label}.result.json"
    spec_path.write_text(json.dumps(spec))
    pg = PgActivity(stack.db_name)
    sampler = procstat.Sampler(_groups(stack, pg))
    provider_before = stack.provider_stats()
    stack.provider_reset_peak()
    pg.sample()
    sampler.open()
    child = subprocess.Popen([PYTHON, "-m", "bench.loadgen", str(spec_path), str(result_path)], cwd=REPO)
    try:
        status, usage = _wait_sampling(child, pg, sampler)
    except BaseException:  # Ctrl-C or an error: the load generator must not outlive the run
        child.kill()
        child.wait()
        raise
    finally:
        pg.close()
    child.returncode = os.waitstatus_to_exitcode(status)
    usage_stats = sampler.close()
    if child.returncode != 0:
        raise RuntimeError(f"load generator for {label} exited {child.returncode}")
    provider_after = stack.provider_stats()
    result = json.loads(result_path.read_text())
    return _summary(label, result, usage_stats, usage.ru_utime + usage.ru_stime, pg, provider_before, provider_after)


def _summary(label, result, usage_stats, loadgen_cpu, pg, provider_before, provider_after) -> dict:
    samples = result["samples"]
    latencies = sorted(latency for _, latency, _ in samples)
    groups = usage_stats["groups"]
    measured = sum(g["cpu_s"] for g in groups.values()) + loadgen_cpu
    hub_cpu = sum(groups[g]["cpu_s"] for g in HUB_GROUPS)
    calls = sum(provider_after[k] - provider_before[k] for k in ("generations", "edits"))
    return {
        "label": label,
        "requests": len(samples),
        "wall_s": result["wall"],
        "rps": len(samples) / result["wall"] if result["wall"] else 0.0,
        "rps_99": _rps_99(samples),
        "latency_s": {q: percentile(latencies, p) for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1))},
        "statuses": dict(sorted(Counter(str(status) for _, _, status in samples).items())),
        "groups": groups,
        "loadgen_cpu_s": loadgen_cpu,
        "hub_cpu_s": hub_cpu,
        "hub_cpu_ms_per_request": hub_cpu * 1000 / len(samples) if samples else None,
        "hub_idle_rss_mib": sum(groups[g]["rss_start_mib"] for g in HUB_GROUPS),
        "hub_idle_pss_mib": sum(groups[g]["pss_start_mib"] for g in HUB_GROUPS),
        "machine_busy_s": usage_stats["machine_busy_s"],
        "machine_capacity_s": (os.cpu_count() or 1) * usage_stats["window_s"],
        "rest_cpu_s": usage_stats["machine_busy_s"] - measured,
        "pg_connections_peak_db": pg.peak_db,
        "pg_connections_peak_server": pg.peak_server,
        "pg_lock_waits_peak": pg.peak_lock_waits,
        "pg_lock_waits_mean": pg.lock_waits_total / pg.samples if pg.samples else 0.0,
        "provider_calls": calls,
        "provider_peak_in_flight": provider_after["peak_in_flight"],
        "collected": result["collected"],
        "samples": samples,  # [start offset s, latency s, status] per request, for later analysis
        "poll": result.get("poll"),
    }
