"""Prices: the project's [prices] table first, then genai-prices' data, never a guess."""

from __future__ import annotations

from decimal import Decimal

from shipyard.config import PriceSettings
from shipyard.generate import price_call


def test_a_call_without_tokens_is_free() -> None:
    cost = price_call(
        provider="template", model="template@abc", input_tokens=0, output_tokens=0, overrides={}
    )
    assert (cost.usd, cost.source) == (Decimal(0), "free")


def test_the_projects_own_price_wins() -> None:
    overrides = {"gpt-4o": PriceSettings(input_per_mtok=1.0, output_per_mtok=4.0)}
    cost = price_call(
        provider="openai",
        model="gpt-4o",
        input_tokens=1_000_000,
        output_tokens=500_000,
        overrides=overrides,
    )
    assert (cost.usd, cost.source) == (Decimal("3"), "override")


def test_known_models_are_priced_from_the_shipped_data() -> None:
    cost = price_call(
        provider="openai", model="gpt-4o", input_tokens=1000, output_tokens=500, overrides={}
    )
    assert cost.source == "genai-prices"
    assert Decimal("0.001") < cost.usd < Decimal("0.1")


def test_an_unknown_local_model_is_recorded_as_unknown_not_guessed() -> None:
    cost = price_call(
        provider="openai", model="qwen2.5-coder:7b", input_tokens=900, output_tokens=100,
        overrides={},
    )  # fmt: skip
    assert (cost.usd, cost.source) == (Decimal(0), "unknown")
