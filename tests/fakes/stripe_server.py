"""A local fake of the few Stripe API endpoints the hub's payment flows use, speaking Stripe's
protocol (form-encoded requests with bracketed keys, `Authorization: Bearer sk_…`, idempotency
keys, Stripe's error body), and a webhook sender that signs events exactly as Stripe does.

The hub's official `stripe` library is pointed at it by its base URL (STRIPE_API_BASE)::

    fake = FakeStripeServer().start()
    session = ...  # the hub opens a Checkout Session: POST /v1/checkout/sessions
    events = fake.pay(session_id)               # the user pays: checkout.session.completed
    fake.signature_header(payload)              # Stripe-Signature: t=…,v1=<HMAC-SHA256>
    fake.deliver(event, url)                    # POSTs it, signed, as Stripe would

Endpoints: POST/GET /v1/checkout/sessions[/{id}] (payment and setup mode), POST /v1/customers,
GET /v1/payment_methods/{id}, POST /v1/payment_intents (off-session: `customer`,
`payment_method`, `confirm`, `off_session`), GET /v1/payment_intents/{id} (`expand[]=
latest_charge`), GET /v1/charges/{id}, POST /v1/refunds. Pages a browser sees: GET /pay/{session}
(the "Checkout" page; its Pay button pays — or, in setup mode, its Save card button saves a card —
delivers the events to `webhook_url` and redirects to the session's success_url) and GET
/receipts/{charge} (the receipt). Scripting: ``fail_next(status, times)`` answers the next API
calls with Stripe's error body; ``decline_next(decline_code, times)`` declines the next
off-session payments as Stripe does (402, a `card_error` naming its PaymentIntent). An idempotency
key answers every repeat with its first answer, a decline too, as Stripe's do.

Flows: ``pay`` (card: completed with payment_status=paid), ``pay(async_payment=True)`` then
``settle(succeeded=…)`` (a bank debit: completed unpaid, then async_payment_succeeded or
_failed), ``expire``, ``refund`` (charge.refunded, amounts cumulative as Stripe reports them) and
``dispute`` (charge.dispute.created), ``save_card`` (a setup session: checkout.session.completed
and setup_intent.succeeded). Each returns the events Stripe would send, as dicts; a charge
carries the PaymentIntent's metadata, which Stripe copies onto it when it is made. The events of
what API calls did (an off-session payment: payment_intent.succeeded or .payment_failed) are
appended to ``events``, for a test to deliver.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import html
import http.server
import itertools
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import parse_qsl, urlsplit

API_VERSION = "2026-10-28.endive"
_KEY_PART = re.compile(r"\[([^\[\]]*)\]")


@dataclasses.dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    params: dict[str, Any]  # the decoded form body or query


def decode_form(text: str) -> dict[str, Any]:
    """Stripe's form encoding (`a[b][0][c]=v`) back to nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head) :])]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node):
    if not isinstance(node, dict):
        return node
    node = {key: _lists(value) for key, value in node.items()}
    if node and all(key.isdigit() for key in node):
        return [node[key] for key in sorted(node, key=int)]
    return node


class StripeError(Exception):
    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.type, self.param = status, type_, param


class FakeStripeServer:
    def __init__(
        self,
        *,
        api_key: str = "sk_test_fake_hub",
        webhook_secret: str = "whsec_fake_hub",
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.webhook_url: str | None = None  # where the Pay page delivers its events
        self.host, self._port = host, port
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle ---------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.sessions: dict[str, dict] = {}
            self.payment_intents: dict[str, dict] = {}
            self.charges: dict[str, dict] = {}
            self.customers: dict[str, dict] = {}
            self.payment_methods: dict[str, dict] = {}
            self.setup_intents: dict[str, dict] = {}
            self.requests: list[RecordedRequest] = []
            self.delivered: list[tuple[dict, int]] = []  # (event, the webhook's status)
            self.events: list[dict] = []  # what API calls made Stripe send (off-session payments)
            self._idempotent: dict[str, tuple[int, dict]] = {}
            self._failures: list[int] = []
            self._declines: list[str] = []
            self.webhook_url = None

    def start(self) -> FakeStripeServer:
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        self._httpd = http.server.ThreadingHTTPServer((self.host, self._port), handler)
        self._httpd.daemon_threads = True
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-stripe", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    def fail_next(self, status: int = 500, *, times: int = 1) -> None:
        """The next `times` API calls answer `status` with Stripe's error body (and
        `Stripe-Should-Retry: false`, so the library does not retry them)."""
        with self._lock:
            self._failures += [status] * times

    def decline_next(self, decline_code: str = "insufficient_funds", *, times: int = 1) -> None:
        """The next `times` off-session payments are declined with `decline_code`."""
        with self._lock:
            self._declines += [decline_code] * times

    def _id(self, prefix: str) -> str:
        return f"{prefix}_test_{next(self._ids):04d}{secrets.token_hex(8)}"

    # -- the flows -----------------------------------------------------------------------------

    def pay(self, session_id: str, *, async_payment: bool = False) -> list[dict]:
        """The customer pays the session: by card (paid at once), or by a method that settles
        later (`async_payment`: completed unpaid; `settle` finishes it)."""
        with self._lock:
            session = self.sessions[session_id]
            assert session["status"] == "open", f"session {session_id} is {session['status']}"
            intent = {
                "id": self._id("pi"),
                "object": "payment_intent",
                "amount": session["amount_total"],
                "currency": session["currency"],
                "metadata": dict(session["_payment_intent_metadata"]),
                "status": "processing" if async_payment else "succeeded",
                "latest_charge": None,
                "created": int(time.time()),
                "livemode": False,
            }
            self.payment_intents[intent["id"]] = intent
            session.update(status="complete", payment_intent=intent["id"], url=None)
            if async_payment:
                return [self.event("checkout.session.completed", session)]
            self._charge(intent)
            session["payment_status"] = "paid"
            return [self.event("checkout.session.completed", session)]

    def settle(self, session_id: str, *, succeeded: bool = True) -> list[dict]:
        """The delayed payment of an `async_payment` session succeeds or fails."""
        with self._lock:
            session = self.sessions[session_id]
            intent = self.payment_intents[session["payment_intent"]]
            if not succeeded:
                intent["status"] = "requires_payment_method"
                return [self.event("checkout.session.async_payment_failed", session)]
            intent["status"] = "succeeded"
            self._charge(intent)
            session["payment_status"] = "paid"
            return [self.event("checkout.session.async_payment_succeeded", session)]

    def expire(self, session_id: str) -> list[dict]:
        with self._lock:
            session = self.sessions[session_id]
            session.update(status="expired", url=None)
            return [self.event("checkout.session.expired", session)]

    def refund(self, payment_intent_id: str, amount: int | None = None) -> list[dict]:
        """Refund `amount` (default: what is left) of the PaymentIntent's charge."""
        with self._lock:
            charge = self._charge_of(payment_intent_id)
            self._refund(charge, amount)
            return [self.event("charge.refunded", charge)]

    def dispute(self, payment_intent_id: str, amount: int | None = None) -> list[dict]:
        with self._lock:
            charge = self._charge_of(payment_intent_id)
            dispute = {
                "id": self._id("dp"),
                "object": "dispute",
                "amount": charge["amount"] if amount is None else amount,
                "currency": charge["currency"],
                "charge": charge["id"],
                "payment_intent": payment_intent_id,
                "reason": "fraudulent",
                "status": "needs_response",
                "metadata": {},
                "created": int(time.time()),
                "livemode": False,
            }
            charge["disputed"] = True
            return [self.event("charge.dispute.created", dispute)]

    def save_card(self, session_id: str, *, brand: str = "visa", last4: str = "4242") -> list[dict]:
        """The customer saves a card on a setup session: a PaymentMethod attached to the session's
        customer and a succeeded SetupIntent carrying `setup_intent_data.metadata`."""
        with self._lock:
            session = self.sessions[session_id]
            assert session["mode"] == "setup" and session["status"] == "open", session
            method = {
                "id": self._id("pm"),
                "object": "payment_method",
                "type": "card",
                "card": {"brand": brand, "last4": last4, "exp_month": 12, "exp_year": 2034},
                "customer": session["customer"],
                "created": int(time.time()),
                "livemode": False,
            }
            self.payment_methods[method["id"]] = method
            setup_intent = {
                "id": self._id("seti"),
                "object": "setup_intent",
                "status": "succeeded",
                "usage": "off_session",
                "customer": session["customer"],
                "payment_method": method["id"],
                "metadata": dict(session["_setup_intent_metadata"]),
                "created": int(time.time()),
                "livemode": False,
            }
            self.setup_intents[setup_intent["id"]] = setup_intent
            session.update(status="complete", setup_intent=setup_intent["id"], url=None)
            return [
                self.event("checkout.session.completed", session),
                self.event("setup_intent.succeeded", setup_intent),
            ]

    def _charge(self, intent: dict) -> dict:
        charge_id = self._id("ch")
        charge = {
            "id": charge_id,
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"],
            "amount_refunded": 0,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "metadata": dict(intent["metadata"]),
            "paid": True,
            "refunded": False,
            "disputed": False,
            "status": "succeeded",
            "receipt_url": f"{self.base_url}/receipts/{charge_id}",
            "created": int(time.time()),
            "livemode": False,
        }
        self.charges[charge_id] = charge
        intent["latest_charge"] = charge_id
        return charge

    def _charge_of(self, payment_intent_id: str) -> dict:
        return self.charges[self.payment_intents[payment_intent_id]["latest_charge"]]

    def _refund(self, charge: dict, amount: int | None) -> dict:
        left = charge["amount"] - charge["amount_refunded"]
        amount = left if amount is None else amount
        if not 0 < amount <= left:
            raise StripeError(400, f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})")
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        return {
            "id": self._id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "currency": charge["currency"],
            "payment_intent": charge["payment_intent"],
            "status": "succeeded",
            "created": int(time.time()),
        }

    # -- events and their signatures -------------------------------------------------------------

    def event(self, type_: str, obj: dict) -> dict:
        """A v1 snapshot event of `obj` as it is now."""
        return {
            "id": self._id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": _public(copy.deepcopy(obj))},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type_,
        }

    def signature_header(self, payload: str, *, timestamp: int | None = None, secret: str | None = None) -> str:
        """`Stripe-Signature` as Stripe sends it: t=<unix time>,v1=<hex HMAC-SHA256 of "t.payload">."""
        timestamp = int(time.time()) if timestamp is None else timestamp
        key = (secret or self.webhook_secret).encode()
        digest = hmac.new(key, f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
        return f"t={timestamp},v1={digest}"

    @staticmethod
    def payload(event: dict) -> str:
        return json.dumps(event, indent=2)  # Stripe sends its events pretty-printed

    def deliver(self, event: dict, url: str | None = None) -> int:
        """POST the event, signed, to `url` (default webhook_url) as Stripe does; its status."""
        payload = self.payload(event)
        request = urllib.request.Request(
            url or self.webhook_url,
            data=payload.encode(),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": self.signature_header(payload),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                "Accept": "*/*; q=0.5, application/xml",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        with self._lock:
            self.delivered.append((event, status))
        return status

    # -- the API -------------------------------------------------------------------------------

    def api(self, method: str, path: str, headers: dict[str, str], params: dict) -> tuple[int, dict]:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, headers, params))
            if headers.get("authorization") != f"Bearer {self.api_key}":
                raise StripeError(401, "Invalid API Key provided")
            if self._failures:
                raise StripeError(self._failures.pop(0), "Something went wrong on Stripe's end.", type_="api_error")
            key = headers.get("idempotency-key")
            if method == "POST" and key and key in self._idempotent:
                return self._idempotent[key]
            answer = self._route(method, path, params)
            if method == "POST" and key:
                self._idempotent[key] = answer
            return answer

    def _route(self, method: str, path: str, params: dict) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if parts[:3] == ["v1", "checkout", "sessions"]:
            if method == "POST" and len(parts) == 3:
                return 200, self._session_create(params)
            if method == "GET" and len(parts) == 4:
                return 200, _public(self._get(self.sessions, parts[3]))
        if parts == ["v1", "customers"] and method == "POST":
            return 200, self._customer_create(params)
        if parts[:2] == ["v1", "payment_methods"] and method == "GET" and len(parts) == 3:
            return 200, copy.deepcopy(self._get(self.payment_methods, parts[2]))
        if parts == ["v1", "payment_intents"] and method == "POST":
            return self._payment_intent_create(params)
        if parts[:2] == ["v1", "payment_intents"] and method == "GET" and len(parts) == 3:
            intent = copy.deepcopy(self._get(self.payment_intents, parts[2]))
            if "latest_charge" in (params.get("expand") or []) and intent["latest_charge"]:
                intent["latest_charge"] = copy.deepcopy(self.charges[intent["latest_charge"]])
            return 200, intent
        if parts[:2] == ["v1", "charges"] and method == "GET" and len(parts) == 3:
            return 200, copy.deepcopy(self._get(self.charges, parts[2]))
        if parts == ["v1", "refunds"] and method == "POST":
            intent = self._get(self.payment_intents, params.get("payment_intent", ""))
            amount = int(params["amount"]) if "amount" in params else None
            return 200, self._refund(self.charges[intent["latest_charge"]], amount)
        raise StripeError(404, f"Unrecognized request URL ({method}: {path})")

    @staticmethod
    def _get(table: dict, object_id: str) -> dict:
        if object_id not in table:
            raise StripeError(404, f"No such object: '{object_id}'", param="id")
        return table[object_id]

    def _customer_create(self, params: dict) -> dict:
        customer = {
            "id": self._id("cus"),
            "object": "customer",
            "email": params.get("email"),
            "metadata": params.get("metadata") or {},
            "created": int(time.time()),
            "livemode": False,
        }
        self.customers[customer["id"]] = customer
        return customer

    def _payment_intent_create(self, params: dict) -> tuple[int, dict]:
        """An off-session payment with a saved card, confirmed at once: succeeded (charged), or
        declined as Stripe declines one — a 402 card_error carrying the failed PaymentIntent."""
        for name in ("amount", "currency", "customer", "payment_method"):
            if not params.get(name):
                raise StripeError(400, f"Missing required param: {name}.", param=name)
        if params.get("confirm") != "true" or params.get("off_session") != "true":
            raise StripeError(400, "This fake confirms off-session payments only", param="confirm")
        self._get(self.customers, params["customer"])
        method = self._get(self.payment_methods, params["payment_method"])
        if method["customer"] != params["customer"]:
            raise StripeError(400, "The PaymentMethod does not belong to the Customer.", param="payment_method")
        intent = {
            "id": self._id("pi"),
            "object": "payment_intent",
            "amount": int(params["amount"]),
            "currency": params["currency"],
            "customer": params["customer"],
            "payment_method": method["id"],
            "description": params.get("description"),
            "metadata": params.get("metadata") or {},
            "status": "succeeded",
            "latest_charge": None,
            "last_payment_error": None,
            "created": int(time.time()),
            "livemode": False,
        }
        self.payment_intents[intent["id"]] = intent
        if self._declines:
            decline_code = self._declines.pop(0)
            error = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": decline_code,
                "message": _DECLINES.get(decline_code, "Your card was declined."),
                "param": None,
                "payment_method": copy.deepcopy(method),
            }
            intent.update(status="requires_payment_method", last_payment_error=error)
            self.events.append(self.event("payment_intent.payment_failed", intent))
            return 402, {"error": {**error, "payment_intent": copy.deepcopy(intent)}}
        self._charge(intent)
        self.events.append(self.event("payment_intent.succeeded", intent))
        return 200, copy.deepcopy(intent)

    def _session_create(self, params: dict) -> dict:
        if params.get("mode") == "setup":
            return self._setup_session_create(params)
        for name in ("mode", "success_url", "line_items"):
            if not params.get(name):
                raise StripeError(400, f"Missing required param: {name}.", param=name)
        if params["mode"] != "payment":
            raise StripeError(400, "This fake opens payment and setup sessions only", param="mode")
        (item,) = params["line_items"]
        price = item["price_data"]
        amount = int(price["unit_amount"]) * int(item.get("quantity", 1))
        session_id = self._id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_subtotal": amount,
            "amount_total": amount,
            "currency": price["currency"],
            "client_reference_id": params.get("client_reference_id"),
            "customer_email": params.get("customer_email"),
            "metadata": params.get("metadata") or {},
            "payment_intent": None,
            "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"),
            "url": f"{self.base_url}/pay/{session_id}",
            "created": int(time.time()),
            "expires_at": int(time.time()) + 24 * 3600,
            "livemode": False,
            "_product": price["product_data"]["name"],
            "_payment_intent_metadata": (params.get("payment_intent_data") or {}).get("metadata") or {},
        }
        self.sessions[session_id] = session
        return _public(session)

    def _setup_session_create(self, params: dict) -> dict:
        for name in ("success_url", "customer"):
            if not params.get(name):
                raise StripeError(400, f"Missing required param: {name}.", param=name)
        self._get(self.customers, params["customer"])
        session_id = self._id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "setup",
            "status": "open",
            "payment_status": "no_payment_required",
            "amount_total": None,
            "currency": None,
            "customer": params["customer"],
            "metadata": params.get("metadata") or {},
            "payment_intent": None,
            "setup_intent": None,
            "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"),
            "url": f"{self.base_url}/pay/{session_id}",
            "created": int(time.time()),
            "expires_at": int(time.time()) + 24 * 3600,
            "livemode": False,
            "_setup_intent_metadata": (params.get("setup_intent_data") or {}).get("metadata") or {},
        }
        self.sessions[session_id] = session
        return _public(session)

    # -- the pages a browser sees ----------------------------------------------------------------

    def pay_page(self, session_id: str) -> str:
        session = self._get(self.sessions, session_id)
        if session["mode"] == "setup":
            return (
                "<!doctype html><title>Fake Stripe Checkout</title><h1>Save a card</h1>"
                f'<form method="post" action="/pay/{session_id}"><button type="submit">Save card</button></form>'
            )
        price = f"{session['amount_total'] / 100:.2f} {session['currency'].upper()}"
        return (
            "<!doctype html><title>Fake Stripe Checkout</title>"
            f"<h1>Pay {html.escape(price)}</h1><p>{html.escape(session['_product'])}</p>"
            f'<form method="post" action="/pay/{session_id}"><button type="submit">Pay</button></form>'
        )

    def pay_and_return(self, session_id: str) -> str:
        """The Pay (or Save card) button: pay (or save the card), deliver the events to
        webhook_url, and return the success URL."""
        setup = self.sessions[session_id]["mode"] == "setup"
        events = self.save_card(session_id) if setup else self.pay(session_id)
        for event in events:
            self.deliver(event)
        return self.sessions[session_id]["success_url"]


# Stripe's messages for a few decline codes (docs.stripe.com/declines/codes).
_DECLINES = {
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
}


def _public(obj: dict) -> dict:
    return {key: value for key, value in obj.items() if not key.startswith("_")}


class _Handler(http.server.BaseHTTPRequestHandler):
    fake: FakeStripeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        try:
            if url.path.startswith("/pay/"):
                session_id = url.path.removeprefix("/pay/")
                if method == "GET":
                    return self._send(200, self.fake.pay_page(session_id).encode(), "text/html; charset=utf-8")
                return self._send(303, b"", "text/plain", location=self.fake.pay_and_return(session_id))
            if url.path.startswith("/receipts/"):
                return self._send(200, b"<!doctype html><title>Receipt</title><h1>Receipt</h1>", "text/html")
            headers = {name.lower(): value for name, value in self.headers.items()}
            params = decode_form(body if method == "POST" else url.query)
            status, answer = self.fake.api(method, url.path, headers, params)
        except StripeError as error:
            body = {"error": {"type": error.type, "message": str(error), "param": error.param}}
            return self._send(error.status, json.dumps(body).encode(), "application/json", should_retry="false")
        self._send(status, json.dumps(answer).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Request-Id", f"req_{secrets.token_hex(7)}")
        if "location" in headers:
            self.send_header("Location", headers["location"])
        if "should_retry" in headers:
            self.send_header("Stripe-Should-Retry", headers["should_retry"])
        self.end_headers()
        self.wfile.write(body)
