"""Prometheus metrics: what is counted, and the one way they are exposed.

Every process counts in its own memory, except the web server's: gunicorn runs several
processes, so deploy/gunicorn.conf.py points `PROMETHEUS_MULTIPROC_DIR` at a directory of
per-process files that a scrape adds up (prometheus_client's multiprocess mode; gauges sum the
live processes only). Workers are one process each and serve their own registry on
`HUB_METRICS_PORT`. Both answer only with `Authorization: Bearer HUB_METRICS_TOKEN`; without a
token the metrics are off (404), since the counters tell how busy the business is.
"""

import hmac
import logging
import os
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

# Seconds: from an instant answer up to the contract's longest sync wait (800 s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900)

HTTP_REQUESTS = Counter(
    "hub_http_requests_total",
    "HTTP requests answered, by route pattern, method and status",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "hub_http_request_duration_seconds", "Time to answer an HTTP request", ["route", "method"], buckets=LATENCY_BUCKETS
)
GENERATIONS_FINISHED = Counter(
    "hub_generations_finished_total", "Generations that reached a final state, by model and status", ["model", "status"]
)
GENERATION_LATENCY = Histogram(
    "hub_generation_duration_seconds",
    "From the request's charge to the generation's final state, by model and status",
    ["model", "status"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_ERRORS = Counter(
    "hub_provider_errors_total", "Failed provider calls that failed a generation attempt, by kind", ["kind"]
)
CREDITS = Counter("hub_credits_total", "Credits of generations: charged (committed) or refunded", ["direction"])
# A worker's finishing turns (workers.finishing): how long answers waited for one, and how many
# waited the longest allowed and finished without one (a sign that WORKER_FINISHING_SLOTS is low).
FINISHING_WAIT = Histogram(
    "hub_worker_finishing_wait_seconds",
    "Time a provider's answer waited for a finishing turn in the worker",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5),
)
FINISHING_UNGATED = Counter(
    "hub_worker_finishing_ungated_total", "Answers finished without a turn after waiting the longest allowed"
)
SYNC_WAITS = Gauge(
    "hub_sync_waits_in_flight", "Sync requests waiting for their generation right now", multiprocess_mode="livesum"
)
EVENT_STREAMS = Gauge(
    "hub_event_streams_open",
    "Event streams (`stream: true` answers, /generations/{id}/events) open right now",
    multiprocess_mode="livesum",
)


# Collectors read at scrape time by the web's /metrics, from the shared services (so any one web
# process tells the truth); apps above hub/ add theirs (generations: unfinished by status).
SCRAPE_COLLECTORS = []


class _QueueCollector:
    """The broker's queue lengths: what KEDA scales the generation workers on."""

    def collect(self):
        from hub.celery import app

        depth = GaugeMetricFamily("hub_queue_depth", "Messages waiting in the broker's queue", labels=["queue"])
        if app.conf.broker_url.startswith(("redis://", "rediss://")):
            with app.connection_for_read() as conn:
                client = conn.default_channel.client
                for queue in (settings.GENERATIONS_QUEUE, settings.HOUSEKEEPING_QUEUE):
                    depth.add_metric([queue], client.llen(queue))
        yield depth


SCRAPE_COLLECTORS.append(_QueueCollector())


class _Guarded:
    """A scrape-time collector whose service is down yields nothing (and says so in the log),
    so the process's own counters are still scraped."""

    def __init__(self, collector):
        self.collector = collector

    def collect(self):
        try:
            return list(self.collector.collect())
        except Exception as exc:  # noqa: BLE001 — any client error of the database or the broker
            logger.warning("metrics: %s skipped: %s", type(self.collector).__name__, exc)
            return []


def exposition(*, with_shared: bool) -> bytes:
    """This process's metrics (all web processes' in multiprocess mode), in the text format."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if with_shared:
        shared = CollectorRegistry()
        for collector in SCRAPE_COLLECTORS:
            shared.register(_Guarded(collector))
        body += generate_latest(shared)
    return body


def authorized(authorization: str | None) -> bool:
    """A bearer token equal to HUB_METRICS_TOKEN, compared in constant time."""
    token = settings.METRICS_TOKEN
    if not token or not authorization:
        return False
    return hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode())


def _worker_app(environ, start_response):
    if environ.get("PATH_INFO") != "/metrics":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    if not authorized(environ.get("HTTP_AUTHORIZATION")):
        start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
        return [b"a valid bearer token is required\n"]
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
    return [exposition(with_shared=False)]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 — scrapes every few seconds: not logged
        pass


def serve_worker_metrics() -> WSGIServer | None:
    """Serve /metrics for a Celery worker on HUB_METRICS_PORT (off when unset or no token)."""
    if not settings.METRICS_PORT:
        return None
    if not settings.METRICS_TOKEN:
        logger.warning("metrics: HUB_METRICS_PORT is set but HUB_METRICS_TOKEN is not; not serving metrics")
        return None
    try:
        server = make_server("0.0.0.0", settings.METRICS_PORT, _worker_app, handler_class=_QuietHandler)
    except OSError as exc:  # e.g. two workers on one host with one port: generations still run
        logger.error("metrics: cannot serve on port %s: %s", settings.METRICS_PORT, exc)
        return None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    logger.info("metrics served on port %s", settings.METRICS_PORT)
    return server
