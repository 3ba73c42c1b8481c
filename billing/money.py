"""Amounts as people read them: Stripe's amounts are in the currency's smallest unit."""

from decimal import Decimal

# Stripe's zero- and three-decimal currencies (docs.stripe.com/currencies); the rest have two.
ZERO_DECIMAL = set("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = set("bhd jod kwd omr tnd".split())


def money(amount: int, currency: str) -> str:
    """`900, "usd"` → `9.00 USD`."""
    places = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    return f"{Decimal(amount).scaleb(-places):,.{places}f} {currency.upper()}"
