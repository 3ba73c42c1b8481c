"""Each request: an id, one access log line, and its metrics (hub/infra/logs.py, hub/infra/metrics.py).

The id is the client's `X-Request-ID` when it is a plain token (so a request can be followed
from a load balancer through the hub to its generation's worker), else a new one; it is
returned in `X-Request-ID` and bound to every log line the request writes.
"""

import logging
import re
import time
import uuid

import structlog
from django.conf import settings
from django.http import HttpResponse, JsonResponse

from hub.http.exception_handler import error_body
from hub.infra import metrics
from hub.infra.metrics import HTTP_LATENCY, HTTP_REQUESTS

logger = logging.getLogger("hub.access")

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# Anything else is counted as "other": a client must not mint label values.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def request_id_of(header: str | None) -> str:
    if header and _CLIENT_ID.fullmatch(header):
        return header
    return f"req_{uuid.uuid4().hex}"


def metrics_view(request):
    """/metrics on the web server (served by the middleware below, ahead of the URL routes)."""
    if not settings.METRICS_TOKEN:
        return JsonResponse(error_body("notFound", "Resource not found", status=404), status=404)
    if not metrics.authorized(request.headers.get("Authorization")):
        message = "Send the metrics token as Authorization: Bearer <HUB_METRICS_TOKEN>"
        response = JsonResponse(error_body("invalidApiKey", message, status=401), status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics.exposition(with_shared=True), content_type=metrics.CONTENT_TYPE_LATEST)


def current_request_id() -> str | None:
    return structlog.contextvars.get_contextvars().get("request_id")


class RequestObservabilityMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info == "/metrics":
            # Answered before Django's host check and HTTPS redirect: Prometheus scrapes each web
            # pod by its IP over the cluster network (through a Service it would see one pod's
            # counts per scrape). The bearer token is the guard; a scrape is not counted itself.
            return metrics_view(request)
        started = time.perf_counter()
        structlog.contextvars.clear_contextvars()
        request_id = request_id_of(request.headers.get("X-Request-ID"))
        structlog.contextvars.bind_contextvars(request_id=request_id)
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        response["X-Request-ID"] = request_id
        # The route pattern, not the path: ids in paths would make a metric per generation.
        match = request.resolver_match
        route = match.route if match else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
        HTTP_LATENCY.labels(route, method).observe(elapsed)
        logger.info(
            "%s %s %s",
            method,
            route,
            response.status_code,
            extra={"status": response.status_code, "duration_ms": round(elapsed * 1000, 1), "path": request.path},
        )
        structlog.contextvars.clear_contextvars()
        return response
