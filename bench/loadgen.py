"""Closed-loop load generator: C clients, each sends its next request when the previous answered.

    python -m bench.loadgen SPEC.json RESULT.json

It runs as its own process so that its CPU is measured apart from the hub's and from the
sampler's, and so that a busy sampler never delays it. One asyncio loop (uvloop) and one
aiohttp session: the cheapest client in CPU per request we have. The spec (written by
bench.measure) says what to send; the result holds every request's start offset, latency and
status ("timeout" when the client timeout fired, "error:<type>" when the connection failed).

With `ramp` > 0 the clients start one after another, evenly over `ramp` seconds (client k
sends its first request at k × ramp / C), the way a load tool's spawn rate brings users in: a
steady arrival rate from the first second instead of all C requests at once.

Bounded twice: no request starts after `requests` were sent or after `time_limit` seconds, and
each request gives up after `timeout` seconds. With `poll`, the `poll_url`s of the answers are
then fetched every `interval` seconds until each generation is final or `time_limit` passes.
"""

import asyncio
import json
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import aiohttp
import uvloop

FINAL = ("succeeded", "failed")


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        raise SystemExit(f"the load generator targets loopback only, not {url}")


def _payload(spec: dict):
    """A fresh request body: multipart file parts are streamed from disk and can be sent once."""
    multipart = spec.get("multipart")
    if multipart is None:
        return spec.get("body", "").encode() or None, []
    form, files = aiohttp.FormData(), []
    for name, value in multipart["fields"].items():
        form.add_field(name, value)
    for part in multipart["files"]:
        f = open(part["path"], "rb")
        files.append(f)
        form.add_field(part["name"], f, filename=part["filename"], content_type=part["content_type"])
    return form, files


async def closed_loop(session: aiohttp.ClientSession, spec: dict) -> dict:
    samples, collected = [], []
    started = time.perf_counter()
    stop_at = started + spec["time_limit"]
    issued = 0

    async def client(k: int) -> None:
        nonlocal issued
        await asyncio.sleep(k * spec["ramp"] / spec["concurrency"])
        while issued < spec["requests"] and time.perf_counter() < stop_at:
            issued += 1
            body, files = _payload(spec)
            sent = time.perf_counter()
            answer = b""
            try:
                async with session.request(spec["method"], spec["url"], data=body, headers=spec["headers"]) as resp:
                    answer = await resp.read()
                    status = resp.status
            except TimeoutError:
                status = "timeout"
            except aiohttp.ClientError as exc:
                status = f"error:{type(exc).__name__}"
            finally:
                for f in files:
                    f.close()
            samples.append((round(sent - started, 6), round(time.perf_counter() - sent, 6), status))
            if spec.get("collect") and status in (200, 202):
                collected.append(json.loads(answer)[spec["collect"]])

    await asyncio.gather(*(client(k) for k in range(spec["concurrency"])))
    return {"wall": time.perf_counter() - started, "samples": samples, "collected": collected}


async def poll(session: aiohttp.ClientSession, spec: dict, urls: list[str], started: float) -> dict:
    """Fetch every pending URL once a round, rounds `interval` apart, until all are final."""
    options = spec["poll"]
    stop_at = time.perf_counter() + options["time_limit"]
    pending, final, http = list(urls), Counter(), Counter()
    limit = asyncio.Semaphore(spec["concurrency"])

    async def check(url: str) -> bool:
        async with limit:
            try:
                async with session.get(url, headers=spec["headers"]) as resp:
                    http[resp.status] += 1
                    if resp.status != 200:
                        return False
                    status = (await resp.json())["status"]
            except (TimeoutError, aiohttp.ClientError) as exc:
                http["timeout" if isinstance(exc, TimeoutError) else f"error:{type(exc).__name__}"] += 1
                return False
        if status in FINAL:
            final[status] += 1
            return True
        return False

    rounds, all_final_at = 0, None
    while pending and time.perf_counter() < stop_at:
        round_started = time.perf_counter()
        done = await asyncio.gather(*(check(url) for url in pending))
        pending = [url for url, is_final in zip(pending, done, strict=True) if not is_final]
        rounds += 1
        if not pending:
            all_final_at = time.perf_counter() - started
            break
        await asyncio.sleep(max(0.0, options["interval"] - (time.perf_counter() - round_started)))
    return {
        "time_to_all_final": all_final_at,
        "final": dict(final),
        "unfinished": len(pending),
        "rounds": rounds,
        "requests": sum(http.values()),
        "http": {str(k): v for k, v in http.items()},
    }


async def main(spec: dict) -> dict:
    _check_loopback(spec["url"])
    connector = aiohttp.TCPConnector(limit=spec["concurrency"], limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=spec["timeout"])
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        result = await closed_loop(session, spec)
        if spec.get("poll"):
            for url in result["collected"]:
                _check_loopback(url)
            result["poll"] = await poll(session, spec, result["collected"], started)
    return result


if __name__ == "__main__":
    spec_path, result_path = sys.argv[1:3]
    with open(spec_path) as f:
        loaded = json.load(f)
    outcome = uvloop.run(main(loaded))
    with open(result_path, "w") as f:
        json.dump(outcome, f)
