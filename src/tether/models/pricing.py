"""What a model request cost, in US dollars.

Prices come from ``genai-prices`` (a price table bundled with the package; it never goes
to the network by itself) unless a :class:`Price` is given, which wins. A model the table
does not know has an **unknown** cost (``None``), never zero: a run with
``max_cost_usd`` then stops, because its budget cannot be enforced. Give self-hosted and
local models an explicit price, usually :data:`FREE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tether.messages import Usage

__all__ = ["FREE", "Price", "cost_usd"]

_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """A model's price in US dollars per million tokens.

    Example: ``Price(input=Decimal("2"), output=Decimal("8"))`` for $2 / $8 per MTok.
    """

    input: Decimal
    """Dollars per million input (prompt) tokens."""
    output: Decimal
    """Dollars per million output (completion) tokens."""

    def cost(self, usage: Usage) -> Decimal:
        """The cost of ``usage`` at this price, in US dollars."""
        return (self.input * usage.input_tokens + self.output * usage.output_tokens) / _MILLION


FREE = Price(input=Decimal(0), output=Decimal(0))
"""The price of a model you run yourself: the local model's, or a self-hosted server's."""


def cost_usd(
    usage: Usage,
    *,
    provider: str,
    model: str,
    price: Price | None = None,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Decimal | None:
    """Return what ``usage`` of ``model`` at ``provider`` cost, or ``None`` if unknown.

    Args:
        usage: Tokens the provider reported (input includes cached tokens).
        provider: ``genai-prices`` provider id, such as ``openai`` or ``anthropic``.
        model: The model name as sent to the provider.
        price: A price that overrides the table. Default: look the model up.
        cache_read_tokens: Input tokens served from the provider's prompt cache (cheaper).
        cache_write_tokens: Input tokens written to the prompt cache (dearer at some).
    """
    if price is not None:
        return price.cost(usage)
    from genai_prices import Usage as PriceUsage  # its price table takes ~0.3 s to load
    from genai_prices import calc_price

    counted = PriceUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=cache_read_tokens or None,
        cache_write_tokens=cache_write_tokens or None,
    )
    try:
        return calc_price(counted, model_ref=model, provider_id=provider).total_price
    except LookupError:
        return None
