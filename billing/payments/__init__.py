"""Selling credits through Stripe: packs, checkout, auto top-ups, and the webhook events that pay,
fail, refund or dispute a purchase. Credits still move only through billing.services (a paid
grant, a take-back); this package decides when: checkout (packs and the Checkout a user opens),
events (Stripe's webhook events), topups (an auto top-up's payment), and purchases (the
settlement they share).

Exactly once, whatever Stripe's deliveries do: each event id is inserted in the transaction that
applies the event (ProcessedStripeEvent, unique), so a repeated or concurrent delivery finds it
and changes nothing; the events of one purchase apply one at a time under the purchase's row
lock (lock_objects, before the account's); and the database holds one grant per purchase and one
purchase per Checkout Session. Amounts are never taken from an event: the purchase row, written
when the checkout started, says what is granted, and the event must name the same session,
amount and currency.

An auto top-up is a purchase per crossing of the account's top-up threshold (unique), paid by
one off-session PaymentIntent whose idempotency key names the crossing: workers racing on one
crossing make one purchase and, at Stripe, one payment. Stripe's synchronous answer and its
`payment_intent.*` events settle the purchase the same way under its row lock, whichever comes
first; the other finds it settled.
"""

from billing.payments.checkout import CHECKOUTS_PER_HOUR, Checkout, checkout_start, pack_create, pack_for_sale
from billing.payments.events import HANDLED_EVENTS, stripe_event_apply
from billing.payments.topups import TOPUP_RETRY_WINDOW, autotopup_charge

__all__ = [
    "CHECKOUTS_PER_HOUR",
    "HANDLED_EVENTS",
    "TOPUP_RETRY_WINDOW",
    "Checkout",
    "autotopup_charge",
    "checkout_start",
    "pack_create",
    "pack_for_sale",
    "stripe_event_apply",
]
