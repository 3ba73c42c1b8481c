"""One webhook attempt: claim it, sign the payload (Standard Webhooks), POST it through a
connection that can only reach an address the SSRF rules allow, and record the outcome
(generations.webhooks decides what follows: success, a retry, or the end).

SSRF: the host is resolved once per attempt, every address it resolves to is checked, and the
connection is made to the checked address itself — so the address judged is the address
connected to, and a second lookup (DNS rebinding) has nothing to change. TLS runs on top of
that connection with the URL's host name (SNI and the certificate check). No redirect is
followed and no proxy from the environment is used: either would connect somewhere unchecked.
"""

import json
import logging
import socket
import threading
import time

import httpcore
import httpx
import structlog
from django.conf import settings
from django.utils import timezone
from standardwebhooks import Webhook

from generations.apis import GenerationOutput
from generations.services import connection_release
from generations.webhook_urls import AddressRefused, UnusableWebhookURL, address_refusal, webhook_url_check
from generations.webhooks import (
    ADDRESS_REFUSED,
    ATTEMPT_ERROR,
    CONNECTION_ERROR,
    INVALID_URL,
    TIMEOUT,
    AttemptOutcome,
    webhook_attempt_record,
    webhook_delivery_claim,
    webhook_secret_get_or_create,
)
from hub.infra.timefmt import iso_z

logger = logging.getLogger(__name__)

USER_AGENT = "GPT-Image-Hub-Webhooks/1"


class _GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend with the SSRF check at the one place a connection is made,
    and the attempt's overall deadline: httpx's timeouts bound each read and write, so a
    receiver dribbling its answer a byte at a time would hold the worker thread for ever;
    `cut()` (a timer's) shuts the connection down, and the blocked read ends at once."""

    def __init__(self):
        super().__init__()
        self.sockets: list[socket.socket] = []
        self.was_cut = False

    def cut(self) -> None:
        self.was_cut = True
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed
                pass

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            resolved = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(info[4][0] for info in resolved))
        for address in addresses:
            reason = address_refusal(address)
            if reason:  # one refused address refuses the host: which one a client gets is not ours to pick
                raise AddressRefused(f"{host} resolves to {address}: {reason}")
        stream = super().connect_tcp(
            addresses[0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        self.sockets.append(stream.get_extra_info("socket"))
        return stream


def _guarded_transport(backend: _GuardedBackend) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(retries=0)
    # httpx does not take a network backend; its pool does. The pool is replaced with the same
    # one httpx builds, plus the guarded backend.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(), network_backend=backend, retries=0
    )
    return transport


def webhook_deliver(delivery_id: str) -> None:
    """Make the delivery's next attempt if it is due and ours (a duplicate message finds
    nothing to do). A generation's payload is the generation as `GET /generations/{id}` answers
    it now (fresh image URLs), an account event's the `data` it was recorded with, in the
    event's envelope; it is signed at send time with the account's current secret and the
    attempt's own timestamp.

    A claimed attempt always ends recorded: one that raises anything unforeseen is a failed
    attempt too (`attempt_error`, retried on the schedule), or the claim would lapse and the
    sweeper claim it again, for ever, with no attempt to show for it."""
    delivery = webhook_delivery_claim(delivery_id=delivery_id)
    if delivery is None:
        logger.info("webhook %s: not due, or taken by another attempt; nothing to do", delivery_id)
        return
    generation = delivery.generation
    if generation is not None:
        structlog.contextvars.bind_contextvars(generation_id=generation.id, account_id=generation.owner_id)
    else:
        structlog.contextvars.bind_contextvars(account_id=delivery.user_id)
    started_at, start = timezone.now(), time.monotonic()
    try:
        outcome = _attempt(delivery, started_at=started_at)
    except Exception as exc:  # noqa: BLE001 — recorded below; the log has the traceback
        logger.exception("webhook %s: the attempt raised", delivery_id)
        latency_ms = int((time.monotonic() - start) * 1000)
        outcome = AttemptOutcome(
            started_at=started_at, latency_ms=latency_ms, error=ATTEMPT_ERROR, detail=f"unexpected {type(exc).__name__}"
        )
    webhook_attempt_record(delivery=delivery, outcome=outcome)


def _attempt(delivery, *, started_at) -> AttemptOutcome:
    generation = delivery.generation
    if generation is not None:
        data = GenerationOutput.data(generation, root=generation.webhook_base_url)
        owner, url = generation.owner, generation.webhook_url
    else:
        data, owner, url = delivery.data, delivery.user, delivery.url
    body = json.dumps(
        {"type": delivery.type, "timestamp": iso_z(delivery.created_at), "data": data}, separators=(",", ":")
    )
    secret = webhook_secret_get_or_create(user=owner).secret
    connection_release()  # back to the pool: the receiver may take its full timeout
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.id,
        "webhook-timestamp": str(int(started_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(delivery.id, started_at, body),
    }
    return _post(url, body=body, headers=headers, started_at=started_at)


def _post(url: str, *, body: str, headers: dict, started_at) -> AttemptOutcome:
    """POST once, within WEBHOOK_TIMEOUT_SECONDS from connect to the answer's status line and
    headers (the body is not read); the outcome of any failure to send or to get an answer. The
    URL is checked first by the rules it was submitted under (a row stored before one of them
    existed is refused here rather than retried for a day)."""
    start = time.monotonic()

    def outcome(**fields) -> AttemptOutcome:
        return AttemptOutcome(started_at=started_at, latency_ms=int((time.monotonic() - start) * 1000), **fields)

    backend = _GuardedBackend()
    deadline = threading.Timer(settings.WEBHOOK_TIMEOUT_SECONDS, backend.cut)
    deadline.daemon = True
    deadline.start()
    try:
        webhook_url_check(url)
        with httpx.Client(
            transport=_guarded_transport(backend),
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            follow_redirects=False,
            trust_env=False,
        ) as client:
            with client.stream("POST", url, content=body.encode(), headers=headers) as response:
                return outcome(status_code=response.status_code)
    except AddressRefused as exc:
        return outcome(error=ADDRESS_REFUSED, detail=str(exc))
    except UnusableWebhookURL as exc:
        return outcome(error=INVALID_URL, detail=str(exc))
    except httpx.TimeoutException as exc:
        return outcome(error=TIMEOUT, detail=type(exc).__name__)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        if backend.was_cut:
            return outcome(error=TIMEOUT, detail=f"no answer within {settings.WEBHOOK_TIMEOUT_SECONDS:g} s")
        return outcome(error=CONNECTION_ERROR, detail=f"{type(exc).__name__}: {exc}")
    finally:
        deadline.cancel()
