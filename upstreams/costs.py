"""What an upstream call cost the operator: the provider's `usage` and the upstream's prices.

An upstream is priced one of two ways (Upstream.prices, checked by prices_check):

- per image, by quality and size: `{"per_image": {"low": {"1024x1024": "0.011", "*": "0.016"}, …}}`
  ("*" stands for any size, or any quality, not named);
- per million tokens, by kind: `{"per_million_tokens": {"input_text": "5", "input_image": "10",
  "output_image": "40", "output_text": "10"}}` — what OpenAI bills gpt-image models by.

Amounts are decimal strings in the currency the operator pays the provider in (HUB_CREDIT_VALUE
is in the same one). A call's cost is computed when it ends and stored with it, so a later price
change does not rewrite history; an upstream with no prices records no cost (unknown, not free).
"""

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from hub.http.errors import InvalidRequest

PER_IMAGE = "per_image"
PER_MILLION_TOKENS = "per_million_tokens"
TOKEN_KINDS = ("input_text", "input_image", "output_image", "output_text")
ANY = "*"
MILLION = Decimal(1_000_000)
COST_PLACES = Decimal("0.000001")  # UpstreamCall.cost's decimal places


@dataclass(frozen=True)
class Usage:
    """The tokens a provider said a call used (its response's `usage`); None: it did not say."""

    input_text: int | None = None
    input_image: int | None = None
    output_image: int | None = None
    output_text: int | None = None

    @classmethod
    def from_response(cls, usage: object) -> "Usage | None":
        """OpenAI's images `usage`: input_tokens (with input_tokens_details' text and image
        tokens) and output_tokens (all image tokens unless output_tokens_details splits them).
        Anything not a count is left unknown rather than guessed."""
        if not isinstance(usage, dict):
            return None
        inputs, outputs = _details(usage, "input_tokens_details"), _details(usage, "output_tokens_details")
        output_total = _count(usage.get("output_tokens"))
        output_image = _count(outputs.get("image_tokens"))
        output_text = _count(outputs.get("text_tokens"))
        if output_image is None and output_text is None:
            output_image, output_text = output_total, 0 if output_total is not None else None
        found = cls(_count(inputs.get("text_tokens")), _count(inputs.get("image_tokens")), output_image, output_text)
        return found if found != cls() else None

    def as_response(self) -> dict | None:
        """The usage as OpenAI's images answer has it (what the hub's answer repeats to its
        client); None unless every count is known: a total is never guessed from a part."""
        if None in (self.input_text, self.input_image, self.output_image, self.output_text):
            return None
        inputs, outputs = self.input_text + self.input_image, self.output_image + self.output_text
        return {
            "input_tokens": inputs,
            "input_tokens_details": {"text_tokens": self.input_text, "image_tokens": self.input_image},
            "output_tokens": outputs,
            "total_tokens": inputs + outputs,
        }


def _details(usage: dict, name: str) -> dict:
    details = usage.get(name)
    return details if isinstance(details, dict) else {}


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def prices_check(prices: object) -> dict:
    """`prices` as stored: one of the two shapes, every amount a non-negative decimal string
    (InvalidRequest naming what is wrong). {} means no prices."""
    if prices in (None, "", {}):
        return {}
    if not isinstance(prices, dict) or len(prices) != 1 or next(iter(prices)) not in (PER_IMAGE, PER_MILLION_TOKENS):
        raise InvalidRequest(f'Prices are {{"{PER_IMAGE}": …}} or {{"{PER_MILLION_TOKENS}": …}}', param="prices")
    ((how, table),) = prices.items()
    if how == PER_MILLION_TOKENS:
        if not isinstance(table, dict) or not table or set(table) - set(TOKEN_KINDS):
            raise InvalidRequest(f"Token prices are by kind: {', '.join(TOKEN_KINDS)}", param="prices")
        return {how: {kind: _amount(table[kind], kind) for kind in TOKEN_KINDS if kind in table}}
    if not isinstance(table, dict) or not table:
        raise InvalidRequest('Image prices are {"QUALITY": {"SIZE": "AMOUNT"}} ("*": any)', param="prices")
    checked = {}
    for quality, sizes in table.items():
        if not isinstance(sizes, dict) or not sizes:
            raise InvalidRequest(f"Image prices for {str(quality)[:20]!r} are {{SIZE: AMOUNT}}", param="prices")
        checked[str(quality)] = {str(size): _amount(amount, f"{quality} {size}") for size, amount in sizes.items()}
    return {how: checked}


def _amount(value: object, what: str) -> str:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount < 0 or isinstance(value, (bool, float)):
        raise InvalidRequest(f'The price of {what[:40]} is not an amount such as "0.011"', param="prices")
    return str(amount)


def call_cost(prices: dict, *, quality: str, size: str, images: int, usage: Usage | None) -> Decimal | None:
    """What one call cost by the upstream's (checked) prices; None when that cannot be known: no
    prices, no price for this quality and size, or token prices and a provider that sent no usage
    of a priced kind."""
    if PER_IMAGE in prices:
        table = prices[PER_IMAGE]
        sizes = table.get(quality, table.get(ANY, {}))
        price = sizes.get(size, sizes.get(ANY))
        return None if price is None else (Decimal(price) * images).quantize(COST_PLACES)
    if PER_MILLION_TOKENS in prices:
        if usage is None:
            return None
        total = Decimal(0)
        for kind, price in prices[PER_MILLION_TOKENS].items():
            tokens = getattr(usage, kind)
            if tokens is None:
                return None
            total += Decimal(price) * tokens
        return (total / MILLION).quantize(COST_PLACES)
    return None
