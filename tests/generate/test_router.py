"""The router's decisions on their own: tiers, auto by pass rate, fallbacks, breaker, budgets."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shipyard.config import PriceSettings, RouterSettings, TierSettings
from shipyard.generate import REPLY_FORMAT, Breaker, Limit, Rate, Router, Spend

TIERS = {
    "template": TierSettings(),
    "local": TierSettings(provider="openai", model="small", max_tokens=1000),
    "cloud": TierSettings(provider="anthropic", model="big", max_tokens=1000),
}
PRICES = {
    "small": PriceSettings(input_per_mtok=0.0, output_per_mtok=1.0),
    "big": PriceSettings(input_per_mtok=3.0, output_per_mtok=15.0),
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def router(clock: Clock | None = None, **settings: object) -> Router:
    return Router(
        RouterSettings.model_validate(settings),
        chain=["template", "local", "cloud"],
        tiers=TIERS,
        prices=PRICES,
        clock=clock or Clock(),
    )


def test_a_named_tier_falls_back_down_the_chain_only() -> None:
    assert router().plan("cloud", job_kind="k").tiers == ["cloud", "local", "template"]
    assert router().plan("local", job_kind="k").tiers == ["local", "template"]
    # Falling back never climbs to a pricier tier.
    assert router().plan("template", job_kind="k").tiers == ["template"]


def test_human_goes_straight_to_a_person() -> None:
    plan = router().plan("human", job_kind="k")
    assert plan.tiers == []
    assert "written by a person" in plan.notes[0]


def test_auto_takes_the_cheapest_tier_that_passes_often_enough() -> None:
    rates = {
        "template": Rate(passed=2, rated=10),
        "local": Rate(passed=9, rated=10),
        "cloud": Rate(passed=10, rated=10),
    }
    plan = router(success_threshold=0.8).plan("auto", job_kind="k", rates=rates)
    assert plan.tiers == ["local", "template"]
    assert "template passed 2/10 (20%) < 80%" in plan.notes[0]
    assert "local passed 9/10 (90%) ≥ 80%" in plan.notes[1]


def test_auto_gives_a_tier_without_enough_history_its_chance() -> None:
    rates = {"template": Rate(passed=0, rated=2)}
    plan = router(min_samples=3).plan("auto", job_kind="k", rates=rates)
    assert plan.tiers == ["template"]
    assert "gets its chance" in plan.notes[0]


def test_auto_takes_the_top_tier_when_none_is_good_enough() -> None:
    bad = Rate(passed=0, rated=10)
    plan = router().plan("auto", job_kind="k", rates=dict.fromkeys(TIERS, bad))
    assert plan.tiers == ["cloud", "local", "template"]
    assert "taking the top one, cloud" in plan.notes[-1]


def test_auto_repairs_one_tier_above_the_one_that_failed() -> None:
    good = Rate(passed=10, rated=10)
    rates = dict.fromkeys(TIERS, good)
    plan = router().plan("auto", job_kind="k", failed_tier="template", rates=rates)
    assert plan.tiers[0] == "local"
    assert "template's output failed its checks; repair on local" in plan.notes[-1]
    # At the top there is nowhere to climb: the top tier repairs its own output.
    top = router().plan("auto", job_kind="k", failed_tier="cloud", rates=rates)
    assert top.tiers == ["cloud", "local", "template"]


def test_the_breaker_opens_after_failures_in_a_row_and_half_opens_after_cooldown() -> None:
    clock = Clock()
    breaker = Breaker(failures=2, cooldown=60, clock=clock)
    assert breaker.acquire("local") == 0 and not breaker.failed("local")
    breaker.succeeded("local")  # a success resets the streak
    assert not breaker.failed("local")
    assert breaker.failed("local")
    assert breaker.acquire("local") == 60
    clock.now += 59
    assert breaker.acquire("local") == 1
    clock.now += 1
    assert breaker.acquire("local") == 0  # half open: one trial call may go ...
    assert breaker.acquire("local") > 0  # ... while the others still wait
    assert breaker.failed("local")  # the trial failed: the circuit re-opens at once
    assert breaker.acquire("local") == 60
    clock.now += 60
    assert breaker.acquire("local") == 0
    breaker.succeeded("local")  # the trial succeeded: closed, every call may go
    assert breaker.acquire("local") == 0 and breaker.acquire("local") == 0


def test_an_open_circuit_blocks_its_tier_and_says_for_how_long() -> None:
    clock = Clock()
    r = router(clock, breaker_failures=1, breaker_cooldown_seconds=300)
    r.breaker.failed("local")
    reason, by_budget = r.blocked("local", "prompt", [])
    assert reason == "local skipped: out of service for 300 s after repeated failures"
    assert not by_budget


def test_the_estimate_is_the_prompt_plus_a_full_length_reply() -> None:
    prompt = "x" * 3000  # with the reply format, at 3 characters per token
    prompt_tokens = (len(REPLY_FORMAT) + 3000) // 3 + 1
    call = router().estimate("cloud", prompt)
    assert call.tokens == prompt_tokens + 1000
    assert call.usd == (Decimal(prompt_tokens) * 3 + Decimal(1000) * 15) / 1_000_000
    assert router().estimate("template", prompt) == Spend()


def test_a_call_that_would_break_a_budget_is_blocked_and_a_free_one_never_is() -> None:
    spent = Spend(usd=Decimal("0.49"), tokens=100)
    task = Limit(scope="task t-1", usd=Decimal("0.50"), tokens=None, spent=spent)
    reason, by_budget = router().blocked("cloud", "x" * 300, [task])
    assert by_budget
    assert reason.startswith("cloud skipped: task t-1 budget $0.50: $0.4900 spent")
    # The local model's call fits ($0.001 at most) ...
    assert router().blocked("local", "x" * 300, [task]) == ("", False)
    # ... and templates spend nothing, even past the limit.
    over = Limit(scope="task t-1", usd=Decimal("0.50"), tokens=10, spent=Spend(usd=Decimal(1)))
    assert router().blocked("template", "x", [over]) == ("", False)


@pytest.mark.parametrize(
    ("limit", "words"),
    [
        (
            Limit(scope="all domains today", usd=None, tokens=1500, spent=Spend(tokens=600)),
            "tokens",
        ),
        (Limit(scope="domain shop today", usd=Decimal(1), tokens=None, spent=Spend()), ""),
    ],
)
def test_token_budgets_bind_like_currency_ones(limit: Limit, words: str) -> None:
    reason, by_budget = router().blocked("local", "x" * 300, [limit])
    assert by_budget == bool(words)
    assert (words in reason) if words else reason == ""
