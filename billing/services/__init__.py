"""The only code that moves credits. Every movement locks the account row (then grants, in
the order `lock_objects` writes down), writes a ledger row and updates the cached balance in
one transaction: the ledger (accounts, grants, expiry, take-backs, claw-backs) and a
generation's charges (the charge up front, its refund)."""

from billing.services.charges import (
    CHARGED,
    CROSSED,
    credits_charge,
    credits_charge_ctes,
    credits_refund,
)
from billing.services.ledger import (
    WATCHED_KINDS,
    account_as_read,
    account_get_or_create,
    account_set_type,
    account_settle,
    credits_clawback,
    credits_expire_all_due,
    credits_expire_due,
    credits_grant,
    credits_grant_bulk,
    credits_take_back,
)

__all__ = [
    "CHARGED",
    "CROSSED",
    "WATCHED_KINDS",
    "account_as_read",
    "account_get_or_create",
    "account_set_type",
    "account_settle",
    "credits_charge",
    "credits_charge_ctes",
    "credits_clawback",
    "credits_expire_all_due",
    "credits_expire_due",
    "credits_grant",
    "credits_grant_bulk",
    "credits_refund",
    "credits_take_back",
]
