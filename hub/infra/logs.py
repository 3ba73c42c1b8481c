"""Logs: one JSON object per line, from every logger of every process (structlog renders the
standard library's records, so Django's, Celery's and gunicorn's lines are JSON too).

Each line carries the ids bound for the work at hand (structlog contextvars, one context per
request greenlet or task): `request_id` (hub.http.observability), `account_id` (the API key's owner),
`generation_id` (set where a generation is created and where it runs — the worker's lines for
a generation carry the request id it was created under). Secrets never reach a line: keys are
logged by display prefix at most, prompts' images never; `redact` is a last net, masking what
looks like a bearer token, an API key or a webhook secret quoted in a message.
"""

import logging
import re

import structlog

# A bearer token or an API key in a message that quotes a header or a URL by mistake.
_SECRET = re.compile(r"(Bearer\s+|gih_(?:live|test)_|sk-|whsec_)[A-Za-z0-9_\-+/=.]{4,}")


def redact(_, __, event_dict: dict) -> dict:
    event = event_dict.get("event")
    if isinstance(event, str):
        event_dict["event"] = _SECRET.sub(lambda m: m.group(1) + "[redacted]", event)
    return event_dict


def request_line(_, __, event_dict: dict) -> dict:
    """Django passes the request to its lines about a refused or failed one (django.request,
    django.security); rendered whole it would print the query string, where a signed URL's
    signature or a token may sit. The line keeps its method and path."""
    request = event_dict.get("request")
    if hasattr(request, "method") and hasattr(request, "path"):
        event_dict["request"] = f"{request.method} {request.path}"
    return event_dict


class RefusedRequestsAsWarnings(logging.Filter):
    """Django logs a request it refuses as suspicious (too many fields, a bad Host header…) at
    ERROR under django.security.*; the client got a 400 and nothing failed here, so the line is
    a WARNING, and an operator's error alerts stay for the hub's own failures."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security.") and record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class DropGenerationTaskSuccess(logging.Filter):
    """Drops Celery's "Task generations.run[…] succeeded in …s: None" (celery.app.trace, INFO):
    the worker's own line for the generation already says how it ended, with its images and
    credits, and every line costs a generation ~0.1 ms of CPU. Celery's other lines for the task
    (retry, failure) stay. The message is matched as text: importing Celery here would load it
    into processes that log without it (gunicorn's master)."""

    SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s"

    def __init__(self, task_name: str):
        super().__init__()
        self.task_name = task_name

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (record.msg == self.SUCCESS and isinstance(args, dict) and args.get("name") == self.task_name)


PRE_CHAIN = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    request_line,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def formatter(log_format: str) -> dict:
    """The `formatters` entry of Django's LOGGING for LOG_FORMAT (json, or plain for a terminal)."""
    renderer = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    processors = [structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact]
    if log_format == "json":
        # structlog's dict_tracebacks, without the locals of each frame it shows by default: a
        # request's query string, a provider's credential or a prompt would be printed there.
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        processors.append(structlog.processors.ExceptionRenderer(transformer))
    return {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": PRE_CHAIN,
        "processors": [*processors, renderer],
    }
