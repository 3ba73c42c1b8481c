"""Tenants sharing finite upstreams (issue 32): noisy neighbour, learned limit, outage.

Two upstreams (`hub_upstream add`) on the fake provider, each with its own API key that the
fake holds to UPSTREAM_CONCURRENCY calls in flight (over that: 429 with Retry-After, as OpenAI
answers). Tenant A submits `a_requests` async generations (32 clients); then tenant B makes
`b_requests` sync ones, one after another. While A's backlog lasts a sampler reads, every
SAMPLE_SECONDS, the calls each key has in flight (from the fake) and A's queued and running
generations (from PostgreSQL); its backlog lasts while some are queued (waiting for a slot). Variants:

- configured: the upstreams are told their limit (`--concurrency`);
- learned: they are not; only the provider's 429s teach the hub;
- outage: configured, and the first key answers 500 for `outage_seconds` from B's first call on.

The table: B's added latency (its latency minus the provider's), the provider's 429s as a share
of the calls it saw on the two keys, how busy the keys were while A's backlog lasted (calls in
flight ÷ what the healthy keys allow), A's failures, whether every account's credits are exact
(balance = granted − what its generations kept) and `hub_reconcile`'s verdict.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import threading
import time
from typing import TYPE_CHECKING

import psycopg
import redis

from bench import measure
from bench.report import Table
from bench.stack import BODY, Stack, http

if TYPE_CHECKING:
    from bench.scenarios import Context, Scenario

UPSTREAM_CONCURRENCY = 20  # what the fake allows each key
KEYS = ("sk-bench-upstream-one", "sk-bench-upstream-two")
A_CLIENTS = 32
SAMPLE_SECONDS = 0.5
CATALOG_CACHE_SECONDS = 5  # the hub's default: its processes see the new upstreams within it
TENANT_CREDITS = 10_000_000


def run_upstream(s: Scenario, ctx: Context) -> Table:
    # HUB_UPSTREAM_KEYS: a Fernet key (32 random bytes, url-safe base64) for the upstreams' credentials.
    env = {
        "HUB_UPSTREAM_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        **ctx.extra_env,
    }
    stack = Stack(
        provider_latency=s.provider_latency,
        png_bytes=s.png_bytes,
        log_dir=ctx.log_dir,
        workers=ctx.workers,
        extra_env=env,
    )
    with stack:
        auth = {name: _tenant(stack, name) for name in ("a", "b")}
        for index, key in enumerate(KEYS, start=1):
            http("POST", f"{stack.provider_url}/_bench/key", {"key": key, "concurrency": UPSTREAM_CONCURRENCY})
            limit = ["--concurrency", str(UPSTREAM_CONCURRENCY)] if s.upstream != "learned" else []
            stack.manage(
                "hub_upstream", "add", f"key-{index}", "--base-url", f"{stack.provider_url}/v1",
                "--api-key", key, "--models", BODY["model"], *limit,
            )  # fmt: skip
        time.sleep(CATALOG_CACHE_SECONDS + 1)
        a_body, b_body = {**BODY, "async": True, "prompt": "tenant a"}, {**BODY, "prompt": "tenant b"}
        a = measure.run(stack, "A submits (async)", _spec(stack, a_body, auth["a"], s.a_requests, A_CLIENTS, s))
        sampler = _Sampler(stack, auth["a"]["user_id"], _upstream_ids(stack))
        sampler.start()
        outage = _Outage(stack, KEYS[0], s.outage_seconds) if s.upstream == "outage" else None
        if outage:
            outage.start()
        b = measure.run(stack, "B sync, one at a time", _spec(stack, b_body, auth["b"], s.b_requests, 1, s))
        drained = sampler.wait_drained(s.time_limit)
        sampler.stop()
        if outage:
            outage.stop()
        provider = stack.provider_stats()["keys"]
        exact = {name: _credits_exact(stack, tenant["user_id"]) for name, tenant in auth.items()}
        reconcile = stack.manage("hub_reconcile", check=False)
        a_final = _statuses(stack, auth["a"]["user_id"])
    statuses = [provider[key]["statuses"] for key in KEYS]
    calls = sum(sum(counts.values()) for counts in statuses)
    limited = sum(counts.get("429", 0) for counts in statuses)
    added = [latency - s.provider_latency for _, latency, status in b["samples"] if status == 200]
    b_ok = len(added)
    verdict = "clean" if reconcile.returncode == 0 else f"NOT clean (exit {reconcile.returncode})"
    rows = [
        ("A: async submitted (202) / wall s", f"{a['statuses'].get('202', 0)} / {a['wall_s']:.1f}"),
        ("B: sync answered 200", f"{b_ok} of {b['requests']} ({_statuses_text(b['statuses'])})"),
        ("B's added latency p50 / p99 s", f"{_pct(added, 0.5)} / {_pct(added, 0.99)}"),
        ("upstream calls (both keys)", f"{calls} ({'; '.join(_statuses_text(c) for c in statuses)})"),
        ("upstream 429s, % of calls", f"{100 * limited / calls:.1f}%" if calls else "—"),
        ("upstream busy while A's backlog lasts (some queued)", sampler.busy_text(backlog=True)),
        ("upstream busy until A drained (its tail too)", sampler.busy_text(backlog=False)),
        ("hub's learned limit per key (mean, min)", sampler.learned_text()),
        ("hub's slots held ÷ the keys' limit (mean)", sampler.held_text()),
        ("peak calls in flight per key", " / ".join(str(provider[key]["peak_in_flight"]) for key in KEYS)),
        ("A's backlog drained after s", f"{drained:.1f}" if drained is not None else "not within the time limit"),
        ("A's final statuses", _statuses_text(a_final)),
        ("A's failures", str(a_final.get("failed", 0))),
        ("credits exact (A, B)", ", ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in exact.items())),
        ("hub_reconcile", verdict),
    ]
    notes = [
        f"two upstreams, keys of {UPSTREAM_CONCURRENCY} concurrent calls each at the fake provider; limits "
        + ("configured (--concurrency)." if s.upstream != "learned" else "not configured (learned from 429s)."),
        f"A: {s.a_requests} async submits from {A_CLIENTS} clients; B: {s.b_requests} sync calls one after another, "
        "from when A's submits are in.",
        "busy: calls in flight at the fake on the two keys ÷ the concurrency of the keys not failing, sampled every "
        f"{SAMPLE_SECONDS} s from B's first call until A has no queued or running generation; its backlog: the "
        "samples while some of A's generations were queued (waiting for a slot), not its tail, when every one "
        "left is in flight and fewer than the keys allow; the hub's learned "
        "limit and its slots held (its own count of calls in flight, from a slot taken to its release) are read "
        "from its Redis at the same samples.",
    ]
    if outage:
        notes.append(f"outage: {KEYS[0]} answered 500 for {s.outage_seconds:g} s from B's first call on.")
    notes += [f"hub_reconcile: {line}" for line in reconcile.stdout.decode().strip().splitlines()[:3]]
    title = (
        f"tenant A submits {s.a_requests} async, then tenant B makes {s.b_requests} sync one after another; "
        f"provider {s.provider_latency:g} s; limits {'configured' if s.upstream != 'learned' else 'learned'}"
        + (f"; one key answers 500 for {s.outage_seconds:g} s" if outage else "")
    )
    return Table(s.name, title, [{"label": "value"}], [(k, [v]) for k, v in rows], notes, standard_rows=False)


def _tenant(stack: Stack, name: str) -> dict:
    email = f"tenant-{name}@bench.example"
    stack.manage("hub_createuser", email, "--credits", str(TENANT_CREDITS))
    key = stack.manage("hub_createkey", email).stdout.decode().strip().splitlines()[-1]
    with psycopg.connect(stack.db_url) as conn:
        (user_id,) = conn.execute("SELECT id FROM auth_user WHERE email = %s", [email]).fetchone()
    return {"Authorization": f"Bearer {key}", "user_id": user_id}


def _spec(stack: Stack, body: dict, auth: dict, requests: int, clients: int, s: Scenario) -> dict:
    return {
        "url": f"{stack.base_url}/api/v1/images/generations",
        "body": json.dumps(body),
        "headers": {"Content-Type": "application/json", "Authorization": auth["Authorization"]},
        "concurrency": clients,
        "requests": requests,
        "time_limit": s.time_limit,
        "ramp": 0,
    }


def _statuses(stack: Stack, user_id: int) -> dict[str, int]:
    with psycopg.connect(stack.db_url) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM generations_generation WHERE owner_id = %s GROUP BY status", [user_id]
        ).fetchall()
    return dict(sorted(rows))


def _upstream_ids(stack: Stack) -> list[str]:
    """The hub's ids of the upstreams of KEYS (named key-1, key-2 by `run_upstream`), in KEYS' order."""
    names = [f"key-{index}" for index in range(1, len(KEYS) + 1)]
    with psycopg.connect(stack.db_url) as conn:
        rows = dict(conn.execute("SELECT name, id FROM upstreams_upstream WHERE name = ANY(%s)", [names]).fetchall())
    return [rows[name] for name in names]


def _credits_exact(stack: Stack, user_id: int) -> bool:
    """The balance is what was granted less what the account's generations kept (charged − refunded)."""
    with psycopg.connect(stack.db_url) as conn:
        (balance,) = conn.execute("SELECT balance FROM billing_creditaccount WHERE user_id = %s", [user_id]).fetchone()
        (kept,) = conn.execute(
            "SELECT coalesce(sum(credits_requested - credits_refunded), 0) FROM generations_generation"
            " WHERE owner_id = %s",
            [user_id],
        ).fetchone()
    return balance == TENANT_CREDITS - kept


def _pct(values: list[float], q: float) -> str:
    if not values:
        return "—"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]:.2f}"


def _statuses_text(counts: dict) -> str:
    return " ".join(f"{k}×{v}" for k, v in sorted(counts.items())) or "—"


class _Sampler(threading.Thread):
    """Every SAMPLE_SECONDS, while A has generations queued or running: calls in flight on the
    keys ÷ what the healthy keys allow (at the fake), and the hub's own view of each upstream
    (its learned limit and slots held, from its Redis: upstreams.budget's keys)."""

    def __init__(self, stack: Stack, user_id: int, upstream_ids: list[str]):
        super().__init__(daemon=True)
        self.stack, self.user_id, self.upstream_ids = stack, user_id, upstream_ids
        self.busy: list[float] = []  # every sample until A drained, its tail included
        # the samples while some of A's generations were still queued (waiting for a slot): its
        # backlog; in the tail every one left is in flight, fewer than the keys allow
        self.busy_backlog: list[float] = []
        self.held: list[float] = []
        self.learned: list[float] = []  # one per upstream and sample, once the hub has a learned limit
        self.started = time.monotonic()
        self.drained_after: float | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        hub = redis.Redis(port=self.stack.ports["redis"])
        with psycopg.connect(self.stack.db_url, autocommit=True) as conn:
            while not self._halt.wait(SAMPLE_SECONDS):
                queued, running = conn.execute(
                    "SELECT count(*) FILTER (WHERE status = 'queued'), count(*) FILTER (WHERE status = 'running')"
                    " FROM generations_generation WHERE owner_id = %s",
                    [self.user_id],
                ).fetchone()
                if not queued and not running:
                    self.drained_after = time.monotonic() - self.started
                    return
                keys = [self.stack.provider_stats()["keys"][key] for key in KEYS]
                allowed = sum(key["concurrency"] for key in keys if key["failing"] is None)
                if allowed:
                    busy = sum(key["in_flight"] for key in keys) / allowed
                    self.busy.append(busy)
                    if queued:  # generations wait for a slot: the upstreams could be full
                        self.busy_backlog.append(busy)
                    self._sample_hub(hub, allowed)

    def _sample_hub(self, hub: redis.Redis, allowed: int) -> None:
        pipe = hub.pipeline(transaction=False)
        for upstream_id in self.upstream_ids:
            pipe.get(f"hub:up:{upstream_id}:learned")
            pipe.zcard(f"hub:up:{upstream_id}:slots")
        answers = pipe.execute()
        self.learned += [float(value) for value in answers[0::2] if value is not None]
        self.held.append(sum(answers[1::2]) / allowed)

    def wait_drained(self, limit: float) -> float | None:
        self.join(timeout=max(0.0, limit - (time.monotonic() - self.started)))
        return self.drained_after

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def busy_text(self, *, backlog: bool) -> str:
        samples = self.busy_backlog if backlog else self.busy
        if not samples:
            return "—"
        mean, median = statistics.mean(samples), statistics.median(samples)
        return f"{100 * mean:.0f}% mean, {100 * median:.0f}% median ({len(samples)} samples)"

    def learned_text(self) -> str:
        if not self.learned:
            return "none learned"
        return f"{statistics.mean(self.learned):.1f}, {min(self.learned):.1f}"

    def held_text(self) -> str:
        return f"{100 * statistics.mean(self.held):.0f}%" if self.held else "—"


class _Outage(threading.Thread):
    """One key answers 500 for `seconds`, then is healthy again."""

    def __init__(self, stack: Stack, key: str, seconds: float):
        super().__init__(daemon=True)
        self.stack, self.key, self.seconds = stack, key, seconds
        self._halt = threading.Event()

    def run(self) -> None:
        http("POST", f"{self.stack.provider_url}/_bench/key", {"key": self.key, "failing": 500})
        self._halt.wait(self.seconds)
        http("POST", f"{self.stack.provider_url}/_bench/key", {"key": self.key, "failing": None})

    def stop(self) -> None:
        self._halt.set()
        self.join()
