"""The streamed-generation scenario: `stream: true` with `partial_images` against a sync
generation, the same requests to the same stack, in turn — what relaying the partial images
(the provider's stream read by the worker, each partial over Redis to the web and out as an
event, the final images read back from S3 into `*.completed` events) costs the hub per
generation. Issue 33's bar: at most 2 ms of hub CPU more than a sync one.
"""

from __future__ import annotations

import json
import statistics
import urllib.request
from typing import TYPE_CHECKING

from bench import measure
from bench.report import Table
from bench.stack import BODY, Stack

if TYPE_CHECKING:
    from bench.scenarios import Context, Scenario

PARTIAL_IMAGES = 2


def run_stream(s: Scenario, ctx: Context) -> Table:
    streamed_body = {**BODY, "stream": True, "partial_images": PARTIAL_IMAGES}
    with ctx.stack(s) as stack:
        check = _events_of(stack, streamed_body)
        columns = []
        for index in range(ctx.rounds):
            suffix = f", round {index + 1}" if ctx.rounds > 1 else ""
            columns.append(measure.run(stack, f"hub sync{suffix}", _spec(stack, BODY, s)))
            columns.append(
                measure.run(
                    stack, f"hub streamed, partial_images={PARTIAL_IMAGES}{suffix}", _spec(stack, streamed_body, s)
                )
            )
    cpu = [column["hub_cpu_ms_per_request"] for column in columns]
    added = [stream - sync for sync, stream in zip(cpu[::2], cpu[1::2], strict=True)]
    return Table(
        s.name,
        f"a streamed generation (partial_images={PARTIAL_IMAGES}) vs a sync one",
        columns,
        extra_rows=[
            (
                "hub CPU ms/request: streamed − sync",
                [f"{added[i // 2]:+.2f}" if i % 2 else "" for i in range(len(columns))],
            )
        ],
        notes=[
            f"a streamed request before the phases got: {check}.",
            f"hub CPU added by streaming, per generation: {', '.join(f'{a:+.2f}' for a in added)} ms"
            + (f" (median {statistics.median(added):+.2f})" if len(added) > 1 else "")
            + "; the bar is +2 ms.",
        ],
    )


def _spec(stack: Stack, body: dict, s: Scenario) -> dict:
    return {
        "url": f"{stack.base_url}/api/v1/images/generations",
        "body": json.dumps(body),
        "headers": {"Content-Type": "application/json", **stack.auth},
        "concurrency": s.concurrency,
        "requests": s.requests,
        "time_limit": s.time_limit,
        "ramp": s.ramp,
    }


def _events_of(stack: Stack, body: dict) -> str:
    """The events one streamed request got, counted by name: proof that partials were relayed."""
    request = urllib.request.Request(
        f"{stack.base_url}/api/v1/images/generations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **stack.auth},
    )
    counts: dict[str, int] = {}
    with urllib.request.urlopen(request, timeout=120) as response:
        for line in response:
            if line.startswith(b"event: "):
                name = line[7:].strip().decode()
                counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{count} × {name}" for name, count in counts.items()) or "no events"
