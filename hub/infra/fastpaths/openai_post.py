"""`POST images/generations` on a plain urllib3 pool beside the OpenAI SDK.

Replaces: the SDK's request machinery (the parameter transform, request options, httpx's client
and httpcore's pool, the response model) for a generation without references, nearly all of
them: workers.providers.openai_post.PlainGenerations sends it with the SDK client's own URL
and headers (read from the client: `base_url`, `auth_headers`, `default_headers`) and parses the
JSON itself. The call cost 1.36 ms of CPU through the SDK on a quiet worker against 0.64 ms for
this POST (bench stages, 64 KiB images). The adapter's part lives with the adapter (a higher
layer); this module is its fence. Off, every call goes through the SDK.
"""

from hub.infra.fastpaths import FastPath

OPENAI_POST = FastPath("OPENAI_POST", "openai", "3.57.0")
