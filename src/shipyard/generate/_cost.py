"""What a model call cost: the project's own price table first, then ``genai-prices``.

Prices come from the ``[prices]`` table of shipyard.toml when it names the model (local or
private models, negotiated rates), else from the price data that the ``genai-prices``
package ships (no network). A model found in neither is recorded as ``unknown`` at zero
cost, and says so, rather than guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from genai_prices import Usage, calc_price

from shipyard.config import PriceSettings

__all__ = ["Cost", "price_call"]

_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, kw_only=True)
class Cost:
    """The price of one call."""

    usd: Decimal
    """Total in US dollars."""
    source: str
    """``free`` (no model), ``override`` ([prices] table), ``genai-prices`` or ``unknown``."""


def price_call(
    *,
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    overrides: Mapping[str, PriceSettings],
) -> Cost:
    if not input_tokens and not output_tokens:
        return Cost(usd=Decimal(0), source="free")
    own = overrides.get(model)
    if own is not None:
        usd = (
            Decimal(str(own.input_per_mtok)) * input_tokens
            + Decimal(str(own.output_per_mtok)) * output_tokens
        ) / _MILLION
        return Cost(usd=usd, source="override")
    try:
        calculated = calc_price(
            Usage(input_tokens=input_tokens, output_tokens=output_tokens),
            model_ref=model,
            provider_id=provider if provider in ("openai", "anthropic") else None,
        )
    except LookupError:
        return Cost(usd=Decimal(0), source="unknown")
    return Cost(usd=Decimal(calculated.total_price), source="genai-prices")
