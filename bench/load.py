"""Load a running hub and print throughput and latency percentiles.

    .venv/bin/python bench/load.py --base-url http://127.0.0.1:8000 --key gih_live_… \
        --scenario credits --concurrency 32 --requests 2000

Scenarios: `models` (no auth), `credits` (key lookup + balance), `generate-async` (charge +
enqueue, 202), `generate-sync` (whole round trip through the worker, 1024x1024 local PNGs).
`--prompt 'bench [sleep:2]'` makes the local provider take 2 s, like a slow upstream: it shows how
many provider calls one worker process keeps in flight.
Targets loopback only; the request count bounds the run.
"""

import argparse
import statistics
import sys
import threading
import time
from collections import Counter

import httpx

BODY = {"model": "gpt-image-2", "prompt": "bench", "size": "1024x1024", "quality": "low", "n": 1}


def request_for(scenario: str, key: str, prompt: str):
    auth = {"Authorization": f"Bearer {key}"}
    body = {**BODY, "prompt": prompt}
    return {
        "models": ("GET", "/api/v1/models", None, {}),
        "credits": ("GET", "/api/v1/credits", None, auth),
        "generate-async": ("POST", "/api/v1/images/generations", {**body, "async": True}, auth),
        "generate-sync": ("POST", "/api/v1/images/generations", body, auth),
    }[scenario]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", default="")
    parser.add_argument(
        "--scenario", default="credits", choices=["models", "credits", "generate-async", "generate-sync"]
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--prompt", default="bench", help="e.g. 'bench [sleep:2]' for a slow provider")
    args = parser.parse_args()
    if not args.base_url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        sys.exit("bench targets loopback only")

    method, path, body, headers = request_for(args.scenario, args.key, args.prompt)
    latencies: list[float] = []
    statuses: Counter = Counter()
    lock = threading.Lock()
    remaining = [args.requests]

    def worker():
        with httpx.Client(base_url=args.base_url, timeout=900) as client:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                started = time.perf_counter()
                response = client.request(method, path, json=body, headers=headers)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    statuses[response.status_code] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started

    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    print(f"command: {' '.join(sys.argv)}")
    print(f"{args.scenario}: {len(latencies)} requests, concurrency {args.concurrency}, {wall:.2f} s wall")
    print(f"throughput: {len(latencies) / wall:.1f} req/s; statuses: {dict(statuses)}")
    print(
        f"latency ms: p50 {q[49] * 1000:.1f}  p90 {q[89] * 1000:.1f}  p99 {q[98] * 1000:.1f}"
        f"  max {latencies[-1] * 1000:.1f}"
    )
    return 0 if set(statuses) <= {200, 202} else 1


if __name__ == "__main__":
    sys.exit(main())
