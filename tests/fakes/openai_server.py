"""A local fake of the OpenAI images API, scriptable from tests.

In-process use::

    server = FakeOpenAIServer().start()        # 127.0.0.1, free port
    server.plan("429", retry_after=1)          # next request: 429 with Retry-After: 1
    server.plan("500", times=2)                # then two 500s
    ...  # point OPENAI_BASE_URL at server.base_url; later requests answer normally
    server.requests[-1].body["model"]          # what the client sent
    server.stop()

Standalone (e.g. for a worker in another process)::

    python -m tests.fakes.openai_server --port 8765

which prints the base URL. Other processes can then script it over HTTP:
``POST /_fake/plan`` with ``{"behaviour": "500", "times": 2, ...params}``,
``POST /_fake/reset``, ``GET /_fake/requests``, ``POST /_fake/key`` with ``{"key", ...settings}``.

Per-key limits (``key(KEY, concurrency=…, images_per_minute=…, failing=…, retry_after_ms=…)``,
tests/fakes/key_limits.py): the key is accepted besides ``api_key``; over its calls in flight or
its images per sliding minute it answers 429 ``rate_limit_exceeded`` with ``Retry-After``;
``failing=500`` makes it answer 500 until set back to None. Checked before any planned behaviour
(a refused request does not use up a plan); ``key_stats(KEY)`` tells its peak in flight and
``key_statuses(KEY)`` what it answered.

Behaviours (``plan(behaviour, *, times=1, **params)``; ``times=None`` means forever):

- ``"ok"``: normal answer (also what happens when nothing is planned).
- any HTTP status such as ``"400"``, ``"401"``, ``"429"``, ``"500"``: an OpenAI-style error
  body ``{"error": {"message", "type", "param", "code"}}``; params ``message``, ``code``,
  ``type`` and ``retry_after`` (sent as the ``Retry-After`` header, in seconds).
  ``"401"`` echoes the presented key in its message, a worst case for leak tests.
- ``"malformed"``: 200 whose body is not valid JSON (params ``body``, ``content_type``).
- ``"missing_data"``: 200 JSON without a ``data`` field.
- ``"slow"``: sleep ``seconds`` (default 5) and then answer normally.
- ``"fewer"``: return ``count`` (default 1) images, whatever ``n`` was.
- ``"url"``: return ``url`` items pointing at this server's ``/files/<name>.png``.
- ``"not_image"``: valid base64 of bytes that are not an image.
- ``"bad_base64"``: ``b64_json`` that is not valid base64.
- ``"disconnect"``: close the connection without answering.
- ``"gzip"``: a normal answer, gzip-compressed (``Content-Encoding: gzip``).
- ``"redirect"``: 307 to the same path (param ``location``), which a client follows with its POST.
- ``"ignore_options"``: a normal answer, but its first ``wrong`` images (default all) opaque
  PNGs whatever ``output_format`` and ``background`` asked (and of the param ``size``, if given).
- ``"stream_error"``: a streamed request's partial images, then an ``error`` event (params
  ``message``, ``code``) instead of the completed ones.

A request with ``stream: true`` (an edit's form: ``"true"``) is answered as OpenAI streams:
``text/event-stream`` (chunked), ``partial_images`` rounds of ``image_generation.partial_image``
events (edits: ``image_edit.*``; one per image in each round, ``partial_image_index`` the round)
spread over the call's latency (``"slow"``'s ``seconds``: round k at k/(partials+1) of it), then
one ``*.completed`` per image with its ``usage``. The partials sent are ``response_partials``.

Otherwise the images are what the request asked: ``output_format`` (png, jpeg, webp) at
``output_compression``, with an alpha channel for ``background: "transparent"``; the answer
carries ``background``, ``output_format``, ``quality`` and ``size`` as OpenAI's does. An edit's
``mask`` part is kept (``mask_part``).
"""

from __future__ import annotations

import argparse
import base64
import collections
import dataclasses
import email.parser
import email.policy
import gzip
import http.server
import io
import itertools
import json
import ssl
import threading
import time
from typing import Any

from PIL import Image, ImageDraw

from tests.fakes.key_limits import KeyLimits, KeyState, Refusal

API_PREFIX = "/v1"
MAX_SIDE = 4096
DEFAULT_SIZE = (1024, 1024)


@dataclasses.dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any]  # parsed JSON, or the multipart text fields
    file_fields: list[str]  # multipart field name of every file part, in order
    image_parts: list[bytes]  # contents of the `image` / `image[]` parts
    behaviour: str
    mask_part: bytes | None = None  # an edit's `mask` part
    status: int = 0
    response_images: list[bytes] = dataclasses.field(default_factory=list)  # PNGs we sent back
    response_usage: dict[str, Any] | None = None  # the `usage` we sent back
    response_partials: list[bytes] = dataclasses.field(default_factory=list)  # a stream's partial images
    header_lines: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # as sent, repeats kept
    received_at: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def image_count(self) -> int:
        return len(self.image_parts)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly view (no image bytes) for the control endpoint."""
        return {
            "method": self.method,
            "path": self.path,
            "body": self.body,
            "file_fields": self.file_fields,
            "image_count": self.image_count,
            "behaviour": self.behaviour,
            "status": self.status,
            "response_image_count": len(self.response_images),
        }


@dataclasses.dataclass
class _Plan:
    behaviour: str
    times: int | None
    params: dict[str, Any]


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    422: "invalid_request_error",
    429: "requests",
}
_ERROR_MESSAGES = {
    400: "Invalid request.",
    403: "You are not allowed to sample from this model.",
    404: "The model does not exist or you do not have access to it.",
    408: "Request timed out.",
    409: "Conflict.",
    422: "Unprocessable request.",
    429: "Rate limit reached for requests. Please try again later.",
}


class FakeOpenAIServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        verbose: bool = False,
        tls: ssl.SSLContext | None = None,
    ):
        """`api_key`: if set, requests with another bearer token get a 401. `tls`: a server-side
        context with its certificate: the fake then speaks HTTPS."""
        self.host = host
        self.tls = tls
        self.api_key = api_key
        self.verbose = verbose
        self._port = port
        self._lock = threading.Lock()
        self._plans: collections.deque[_Plan] = collections.deque()
        self._requests: list[RecordedRequest] = []
        self._files: dict[str, bytes] = {}
        self.keys = KeyLimits()
        self._counter = itertools.count(1)
        self._stopping = threading.Event()
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._httpd = http.server.ThreadingHTTPServer((self.host, self._port), handler)
        if self.tls is not None:
            self._httpd.socket = self.tls.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.daemon_threads = True
        self._port = self._httpd.server_address[1]
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes "slow" handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def root_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self._port}"

    @property
    def base_url(self) -> str:
        return self.root_url + API_PREFIX

    # -- scripting ---------------------------------------------------------------------------

    def plan(self, behaviour: str, *, times: int | None = 1, **params: Any) -> FakeOpenAIServer:
        """Queue how the next image API request(s) are answered. Returns self for chaining."""
        if behaviour not in _BEHAVIOURS and not (behaviour.isdigit() and len(behaviour) == 3):
            raise ValueError(f"unknown behaviour {behaviour!r}")
        with self._lock:
            self._plans.append(_Plan(behaviour, times, params))
        return self

    def reset(self) -> None:
        """Forget plans, recorded requests, served files and per-key limits."""
        with self._lock:
            self._plans.clear()
            self._requests.clear()
            self._files.clear()
        self.keys.clear()

    def key(self, key: str, **settings: Any) -> FakeOpenAIServer:
        """Accept `key` and hold it to limits (tests/fakes/key_limits.KeyState's settings)."""
        self.keys.configure(key, **settings)
        return self

    def key_stats(self, key: str) -> KeyState:
        return self.keys.stats(key)

    def key_statuses(self, key: str) -> collections.Counter:
        return self.keys.statuses(key)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Image API requests received so far (not /files downloads), oldest first."""
        with self._lock:
            return list(self._requests)

    def _next_plan(self) -> tuple[str, dict[str, Any]]:
        with self._lock:
            if not self._plans:
                return "ok", {}
            plan = self._plans[0]
            if plan.times is not None:
                plan.times -= 1
                if plan.times <= 0:
                    self._plans.popleft()
            return plan.behaviour, plan.params

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(rec)

    def _store_file(self, png: bytes) -> str:
        name = f"img-{next(self._counter)}"
        with self._lock:
            self._files[name] = png
        return name

    def _file(self, name: str) -> bytes | None:
        with self._lock:
            return self._files.get(name)

    def make_png(
        self, width: int, height: int, *, fmt: str = "png", compression: int = 100, transparent: bool = False
    ) -> bytes:
        """A real, distinct image of the given size: a PNG, or `fmt` (jpeg, webp) at `compression`;
        `transparent`: its lower right quarter clear."""
        seq = next(self._counter)
        img = Image.new("RGBA" if transparent else "RGB", (width, height), ((seq * 67) % 256, (seq * 131) % 256, 29))
        ImageDraw.Draw(img).rectangle((0, 0, width // 2, height // 2), fill=(255 - seq % 256, 40, 200))
        if transparent:
            ImageDraw.Draw(img).rectangle((width // 2, height // 2, width, height), fill=(0, 0, 0, 0))
        out = io.BytesIO()
        img.save(out, format=fmt.upper(), **({} if fmt == "png" else {"quality": compression}))
        return out.getvalue()


_BEHAVIOURS = {
    "ok",
    "malformed",
    "missing_data",
    "slow",
    "fewer",
    "url",
    "not_image",
    "bad_base64",
    "disconnect",
    "redirect",
    "gzip",
    "ignore_options",
    "stream_error",
}


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


def _parse_size(value: Any) -> tuple[int, int]:
    if value in (None, "auto"):
        return DEFAULT_SIZE
    try:
        w, h = (int(v) for v in str(value).lower().split("x"))
    except ValueError:
        raise _BadRequest(
            f"Invalid value: '{value}'. Expected 'auto' or 'WIDTHxHEIGHT'.", "size", "invalid_value"
        ) from None
    if not (16 <= w <= MAX_SIDE and 16 <= h <= MAX_SIDE):
        raise _BadRequest(f"Invalid size '{value}'.", "size", "invalid_value")
    return w, h


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], list[str], list[bytes], bytes | None]:
    """Parse multipart/form-data with the stdlib email parser (cgi is gone in 3.13): the text
    fields, every file part's name, the images and the mask."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart():
        raise _BadRequest("Could not parse multipart form.")
    fields: dict[str, str] = {}
    file_fields: list[str] = []
    images: list[bytes] = []
    mask = None
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            file_fields.append(name)
            if name in ("image", "image[]"):
                images.append(payload)
            elif name == "mask":
                mask = payload
        else:
            fields[name] = payload.decode("utf-8")
    return fields, file_fields, images, mask


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    fake: FakeOpenAIServer  # set on the bound subclass
    _rec: RecordedRequest | None = None  # the image API request being answered
    _admitted: KeyState | None = None  # the key state this call is counted on, until its answer goes out

    def log_message(self, format: str, *args: Any) -> None:
        if self.fake.verbose:
            super().log_message(format, *args)

    # -- plumbing ---------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(
        self, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        if self._rec is not None:
            self._rec.status = status  # before answering: the client may look as soon as it has the answer
        self._release(status)  # likewise: a client that has its answer may send the next call at once
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-request-id", f"req_fake_{time.monotonic_ns()}")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _send_error(
        self,
        status: int,
        message: str,
        *,
        type_: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        type_ = type_ or _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self._send_json(
            status, {"error": {"message": message, "type": type_, "param": param, "code": code}}, headers=headers
        )

    # -- routes -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._rec = None  # handlers are reused across keep-alive requests
        path = self.path.split("?")[0]
        if path.startswith("/files/") and path.endswith(".png"):
            png = self.fake._file(path[len("/files/") : -len(".png")])
            if png is None:
                self._send(404, b"not found", "text/plain")
            else:
                self._send(200, png, "image/png")
        elif path == "/_fake/requests":
            self._send_json(200, [r.summary() for r in self.fake.requests])
        elif path == "/_fake/health":
            self._send_json(200, {"ok": True})
        else:
            self._send_error(404, f"Invalid URL (GET {path})")

    def do_POST(self) -> None:
        self._rec = None  # handlers are reused across keep-alive requests
        path = self.path.split("?")[0]
        body = self._read_body()
        if path == "/_fake/plan":
            try:
                spec = json.loads(body)
                self.fake.plan(spec.pop("behaviour"), times=spec.pop("times", 1), **spec)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                self._send_json(400, {"error": str(exc)})
            else:
                self._send_json(200, {"ok": True})
        elif path == "/_fake/key":
            try:
                spec = json.loads(body)
                self.fake.key(spec.pop("key"), **spec)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                self._send_json(400, {"error": str(exc)})
            else:
                self._send_json(200, {"ok": True})
        elif path == "/_fake/reset":
            self.fake.reset()
            self._send_json(200, {"ok": True})
        elif path in (API_PREFIX + "/images/generations", API_PREFIX + "/images/edits"):
            self._images(path, body)
        else:
            self._send_error(404, f"Invalid URL (POST {path})")

    def _images(self, path: str, raw: bytes) -> None:
        rec = RecordedRequest("POST", path, {k.lower(): v for k, v in self.headers.items()}, {}, [], [], "")
        rec.header_lines = [(k.lower(), v) for k, v in self.headers.items()]
        self.fake._record(rec)
        self._rec = rec
        try:
            content_type = self.headers.get("Content-Type", "")
            if path.endswith("/edits"):
                if not content_type.startswith("multipart/form-data"):
                    raise _BadRequest("Expected multipart/form-data.")
                rec.body, rec.file_fields, rec.image_parts, rec.mask_part = _parse_multipart(content_type, raw)
            else:
                try:
                    rec.body = json.loads(raw)
                except ValueError:
                    raise _BadRequest("We could not parse the JSON body of your request.") from None
                if not isinstance(rec.body, dict):
                    raise _BadRequest("Expected a JSON object.")
        except _BadRequest as exc:
            return self._send_error(400, exc.message, param=exc.param, code=exc.code)
        token = self._token()
        admitted = self.fake.keys.admit(token, _images_asked(rec.body))
        if isinstance(admitted, Refusal):
            rec.behaviour = f"key_{admitted.status}"
            return self._send_json(admitted.status, admitted.body, headers=admitted.headers)
        self._admitted = admitted
        rec.behaviour, params = self.fake._next_plan()
        try:
            self._answer(rec, rec.behaviour, params)
        finally:
            self._release(rec.status)  # not answered (a disconnect)

    def _release(self, status: int) -> None:
        if self._admitted is not None:
            self.fake.keys.release(self._admitted, status)
            self._admitted = None

    def _token(self) -> str:
        auth = self.headers.get("Authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""

    def _check_auth(self) -> str | None:
        token = self._token()
        if not token:
            return "You didn't provide an API key."
        if self.fake.api_key is not None and token != self.fake.api_key and not self.fake.keys.known(token):
            return f"Incorrect API key provided: {token}."
        return None

    def _answer(self, rec: RecordedRequest, behaviour: str, params: dict[str, Any]) -> None:
        if behaviour == "disconnect":
            self.close_connection = True
            return
        stream = rec.body.get("stream") in (True, "true")
        seconds = float(params.get("seconds", 5)) if behaviour == "slow" else 0.0
        if seconds and not stream:
            self.fake._stopping.wait(seconds)
        if behaviour == "redirect":
            return self._send(307, b"", headers={"Location": params.get("location", rec.path)})
        if behaviour.isdigit():
            status = int(behaviour)
            headers = {"Retry-After": str(params["retry_after"])} if "retry_after" in params else None
            message = params.get("message")
            if message is None and status == 401:
                message = f"Incorrect API key provided: {self.headers.get('Authorization', '')[7:]}."
            if message is None:
                message = _ERROR_MESSAGES.get(status, "The server had an error while processing your request.")
            return self._send_error(status, message, type_=params.get("type"), code=params.get("code"), headers=headers)

        auth_error = self._check_auth()
        if auth_error:
            return self._send_error(401, auth_error, code="invalid_api_key")
        try:
            if not rec.body.get("prompt"):
                raise _BadRequest("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
            model = str(rec.body.get("model") or "gpt-image-1")
            response_format = rec.body.get("response_format")
            if response_format is not None and model.startswith("gpt-image"):
                raise _BadRequest("Unknown parameter: 'response_format'.", "response_format", "unknown_parameter")
            if rec.path.endswith("/edits") and not rec.image_parts:
                raise _BadRequest("Missing required parameter: 'image'.", "image", "missing_required_parameter")
            width, height = _parse_size(rec.body.get("size"))
            try:
                n = int(rec.body.get("n") or 1)
            except (TypeError, ValueError):
                raise _BadRequest("Invalid type for 'n'.", "n", "invalid_type") from None
            if not 1 <= n <= 10:
                raise _BadRequest(f"Invalid 'n': {n}. Expected a value between 1 and 10.", "n", "integer_out_of_range")
            if rec.body.get("output_format", "png") not in ("png", "jpeg", "webp"):
                raise _BadRequest("Invalid 'output_format'.", "output_format", "invalid_value")
        except _BadRequest as exc:
            return self._send_error(400, exc.message, param=exc.param, code=exc.code)

        if behaviour == "malformed":
            body = params.get("body", '{"created": 1, "data": [{"b64_json": ')
            content_type = params.get("content_type", "application/json")
            return self._send(200, body.encode() if isinstance(body, str) else body, content_type)
        created = int(time.time())
        if behaviour == "missing_data":
            return self._send_json(200, {"created": created})
        if behaviour == "fewer":
            n = int(params.get("count", 1))
        fmt = str(rec.body.get("output_format") or "png")
        transparent = rec.body.get("background") == "transparent"
        compression = int(rec.body.get("output_compression") or 100)
        if behaviour == "not_image":
            rec.response_images = [b"this is not an image"] * n
        else:
            wrong = int(params.get("wrong", n)) if behaviour == "ignore_options" else 0
            other = _parse_size(params.get("size", f"{width}x{height}"))
            rec.response_images = [self.fake.make_png(*other) for _ in range(min(wrong, n))]
            rec.response_images += [
                self.fake.make_png(width, height, fmt=fmt, compression=compression, transparent=transparent)
                for _ in range(n - len(rec.response_images))
            ]
        if behaviour == "url" or response_format == "url":
            names = [self.fake._store_file(png) for png in rec.response_images]
            data = [{"url": f"{self.fake.root_url}/files/{name}.png"} for name in names]
        elif behaviour == "bad_base64":
            data = [{"b64_json": "%%% not base64 %%%"} for _ in rec.response_images]
        else:
            data = [{"b64_json": base64.b64encode(png).decode()} for png in rec.response_images]
        answer = {
            "created": created,
            "data": data,
            "size": f"{width}x{height}",
            "output_format": fmt,
            "background": "transparent" if transparent else "opaque",
            "quality": rec.body.get("quality") or "auto",
            "usage": _usage(rec, str(rec.body.get("quality") or "auto"), width, height, len(data)),
        }
        rec.response_usage = answer["usage"]
        if stream:
            return self._stream(rec, answer, seconds=seconds, error=params if behaviour == "stream_error" else None)
        if behaviour == "gzip":
            body = gzip.compress(json.dumps(answer).encode())
            return self._send(200, body, headers={"Content-Encoding": "gzip"})
        self._send_json(200, answer)

    def _stream(self, rec: RecordedRequest, answer: dict[str, Any], *, seconds: float, error: dict | None) -> None:
        """The answer as OpenAI streams it (the module's docstring), chunked on a kept-alive connection."""
        kind = "image_edit" if rec.path.endswith("/edits") else "image_generation"
        shape = {name: answer[name] for name in ("size", "quality", "background", "output_format")}
        width, height = _parse_size(answer["size"])
        try:
            partials = max(0, min(3, int(rec.body.get("partial_images") or 0)))
        except (TypeError, ValueError):
            partials = 0
        started = time.monotonic()
        rec.status = 200
        self._release(200)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("x-request-id", f"req_fake_{time.monotonic_ns()}")
            self.end_headers()
            for round_ in range(partials):
                self.fake._stopping.wait(max(0.0, started + seconds * (round_ + 1) / (partials + 1) - time.monotonic()))
                for _ in answer["data"]:
                    image = self.fake.make_png(width, height, fmt=shape["output_format"])
                    rec.response_partials.append(image)
                    event = {"type": f"{kind}.partial_image", "b64_json": base64.b64encode(image).decode(), **shape}
                    self._chunk(
                        f"{kind}.partial_image",
                        {**event, "partial_image_index": round_, "created_at": int(time.time())},
                    )
            self.fake._stopping.wait(max(0.0, started + seconds - time.monotonic()))
            if error is not None:
                failure = {
                    "message": error.get("message", "The image could not be generated."),
                    "code": error.get("code"),
                }
                self._chunk("error", {"type": "error", "error": {**failure, "type": "server_error", "param": None}})
            else:
                for item in answer["data"]:
                    event = {"type": f"{kind}.completed", **item, **shape, "usage": answer["usage"]}
                    self._chunk(f"{kind}.completed", {**event, "created_at": int(time.time())})
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _chunk(self, event: str, data: dict[str, Any]) -> None:
        frame = f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
        self.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
        self.wfile.flush()


# gpt-image-1's output tokens per image, by quality, for 1024x1024 (OpenAI's pricing guide: 1024x1536
# and 1536x1024 take 1.5 times as many: their area); smaller sizes as 1024x1024. "auto" answers as high.
OUTPUT_TOKENS_1024 = {"low": 272, "medium": 1056, "high": 4160, "auto": 4160}
IMAGE_INPUT_TOKENS = 323  # per reference image (low input fidelity)


def _usage(rec: RecordedRequest, quality: str, width: int, height: int, images: int) -> dict[str, Any]:
    """The images API's `usage`, as OpenAI reports it: input tokens (text, and image for each
    reference), output tokens (the images)."""
    text = max(1, round(len(str(rec.body.get("prompt"))) / 4))  # ~4 characters a token
    image_in = IMAGE_INPUT_TOKENS * rec.image_count
    per_image = round(OUTPUT_TOKENS_1024.get(quality, 4160) * max(1.0, width * height / 1024**2))
    output = per_image * images
    return {
        "input_tokens": text + image_in,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image_in},
        "output_tokens": output,
        "total_tokens": text + image_in + output,
    }


def _images_asked(body: dict[str, Any]) -> int:
    """The `n` a request asked for (1 when absent or not a number): what a per-minute limit counts."""
    try:
        return max(1, int(body.get("n") or 1))
    except (TypeError, ValueError):
        return 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI images API for local testing.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="reject other bearer tokens with 401")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(args.host, args.port, api_key=args.api_key, verbose=args.verbose).start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
