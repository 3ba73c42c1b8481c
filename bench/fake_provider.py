"""A fast fake of the OpenAI images API for the benchmarks.

    python -m bench.fake_provider --port 8765 --latency 5 --png-bytes 1572864

`POST /v1/images/generations` and `POST /v1/images/edits` sleep `--latency` seconds and answer
`{"created", "data": [{"b64_json"}] * n}` with one PNG built at start-up, so an answer costs a
memory copy, not an encode. It is one asyncio process (uvloop): thousands of requests can sleep
at once without a thread each, and its CPU stays small next to the hub's. Edits bodies (up to
16 reference images of ~50 MB) are read in chunks and dropped, never held.

A generation with `stream: true` is answered as OpenAI streams (text/event-stream):
`partial_images` rounds of `image_generation.partial_image` events (the same PNG) at even
fractions of the latency, then one `image_generation.completed` per image.

`GET /_bench/stats` counts what arrived (so a run can prove the hub really called it);
`POST /_bench/reset-peak` restarts the in-flight peak for the next measurement.
`POST /_bench/key` with `{"key": "sk-…", "concurrency": 20, "images_per_minute": 300, "failing": 500}`
holds that API key to a provider's per-key limits, as the tests' fake does
(tests/fakes/key_limits.py): over them a 429 `rate_limit_exceeded` with `Retry-After`, and
`failing` answers 500 until set back to null; `/_bench/stats` then shows each such key's answers
by status, its calls in flight now and at most, its limit and its switch (bench.upstream_scenarios
samples them).
tests/fakes/openai_server.py is the scriptable fake for the tests; this one only has to be cheap.
"""

import argparse
import asyncio
import base64
import json
import signal
import time

import uvloop
from aiohttp import web

from bench.pngs import noise_png
from tests.fakes.key_limits import KeyLimits, Refusal


class FakeProvider:
    def __init__(self, latency: float, png_bytes: int):
        png = noise_png(png_bytes)
        self.latency = latency
        self.png_size = len(png)
        self.item = b'{"b64_json":"' + base64.b64encode(png) + b'"}'
        shape = b'"size":"1024x1024","quality":"low","background":"opaque","output_format":"png"'
        self.partial = (
            b'event: image_generation.partial_image\ndata: {"type":"image_generation.partial_image","b64_json":"'
            + base64.b64encode(png)
            + b'",'
            + shape
            + b',"partial_image_index":%d,"created_at":%d}\n\n'
        )
        self.completed = (
            b'event: image_generation.completed\ndata: {"type":"image_generation.completed","b64_json":"'
            + base64.b64encode(png)
            + b'",'
            + shape
            + b',"created_at":%d,"usage":{"input_tokens":10,"input_tokens_details":{"image_tokens":0,'
            b'"text_tokens":10},"output_tokens":272,"total_tokens":282}}\n\n'
        )
        self.stats = {
            "generations": 0,
            "edits": 0,
            "answered": 0,
            "in_flight": 0,
            "peak_in_flight": 0,
            "upload_bytes": 0,
        }
        self.keys = KeyLimits()
        self.limited_keys: set[str] = set()

    async def images(self, request: web.Request) -> web.Response:
        kind = "edits" if request.path.endswith("/edits") else "generations"
        self.stats[kind] += 1
        self.stats["in_flight"] += 1
        self.stats["peak_in_flight"] = max(self.stats["peak_in_flight"], self.stats["in_flight"])
        try:
            n, partials = await (self._edits_n(request) if kind == "edits" else self._generations_n(request))
            key = request.headers.get("Authorization", "").removeprefix("Bearer ")
            admitted = self.keys.admit(key, n)
            if isinstance(admitted, Refusal):
                return web.json_response(admitted.body, status=admitted.status, headers=admitted.headers)
            try:
                if partials is not None:
                    return await self._stream(request, n, partials)
                await asyncio.sleep(self.latency)
            finally:
                if admitted is not None:
                    self.keys.release(admitted, 200)
            body = b'{"created":%d,"data":[%s]}' % (int(time.time()), b",".join([self.item] * n))
            self.stats["answered"] += 1
            return web.Response(body=body, content_type="application/json")
        finally:
            self.stats["in_flight"] -= 1

    async def _stream(self, request: web.Request, n: int, partials: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index in range(partials):
            await asyncio.sleep(self.latency / (partials + 1))
            await response.write(b"".join([self.partial % (index, int(time.time()))] * n))
        await asyncio.sleep(self.latency / (partials + 1))
        await response.write(b"".join([self.completed % int(time.time())] * n))
        await response.write_eof()
        self.stats["answered"] += 1
        return response

    async def _generations_n(self, request: web.Request) -> tuple[int, int | None]:
        """The `n` asked, and the `partial_images` of a streamed call (None: not streamed)."""
        body = await request.read()
        self.stats["upload_bytes"] += len(body)
        asked = json.loads(body)
        partials = min(max(int(asked.get("partial_images") or 0), 0), 3) if asked.get("stream") else None
        return _clamp_n(asked.get("n", 1)), partials

    async def _edits_n(self, request: web.Request) -> tuple[int, None]:
        n = 1
        reader = await request.multipart()
        async for part in reader:
            if part.name == "n":
                n = _clamp_n(await part.text())
                continue
            while chunk := await part.read_chunk(1 << 20):
                self.stats["upload_bytes"] += len(chunk)
        return n, None

    async def stats_view(self, request: web.Request) -> web.Response:
        keys = {}
        for key in sorted(self.limited_keys):
            state = self.keys.stats(key)
            keys[key] = {
                "statuses": {str(status): count for status, count in self.keys.statuses(key).items()},
                "in_flight": state.in_flight,
                "peak_in_flight": state.max_in_flight,
                "concurrency": state.concurrency,
                "failing": state.failing,
            }
        return web.json_response({**self.stats, "png_bytes": self.png_size, "latency": self.latency, "keys": keys})

    async def key_view(self, request: web.Request) -> web.Response:
        try:
            spec = await request.json()
            key = spec.pop("key")
            self.keys.configure(key, **spec)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.limited_keys.add(key)
        return web.json_response({"ok": True})

    async def reset_peak(self, request: web.Request) -> web.Response:
        self.stats["peak_in_flight"] = self.stats["in_flight"]
        return web.json_response({"ok": True})


def _clamp_n(value) -> int:
    try:
        return min(max(int(value), 1), 10)
    except (TypeError, ValueError):
        return 1


async def serve(host: str, port: int, latency: float, png_bytes: int) -> None:
    fake = FakeProvider(latency, png_bytes)
    app = web.Application()
    app.router.add_post("/v1/images/generations", fake.images)
    app.router.add_post("/v1/images/edits", fake.images)
    app.router.add_get("/_bench/stats", fake.stats_view)
    app.router.add_post("/_bench/reset-peak", fake.reset_peak)
    app.router.add_post("/_bench/key", fake.key_view)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=4096).start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"fake provider on http://{host}:{port}/v1 latency={latency}s png={fake.png_size}B", flush=True)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--png-bytes", type=int, default=64 * 1024, help="approximate size of the PNG")
    args = parser.parse_args()
    if not args.host.startswith("127."):
        raise SystemExit("the fake provider listens on loopback only")
    uvloop.run(serve(args.host, args.port, args.latency, args.png_bytes))


if __name__ == "__main__":
    main()
