"""The router: which tier writes an attempt, what to try when it cannot, and why.

Tiers are named in shipyard.toml (``[tiers.local]``, ``[tiers.cloud]``; ``template`` always
exists) and ordered cheapest first by ``[generate] chain``. A job kind asks for a tier, for
``human``, or for ``auto``:

- a named tier serves every attempt; when it cannot (an error after its retries, its circuit
  open, or a call that would break a budget), the router falls back *down* the chain, to
  cheaper tiers only, so a failure never raises the bill;
- ``auto`` takes the cheapest tier whose recent pass rate for the job kind reaches
  ``success_threshold`` (a tier with fewer than ``min_samples`` rated attempts gets its
  chance); a repair attempt climbs one tier above the one whose output just failed;
- when no tier can serve, the attempt goes to a person (``human``) instead of failing
  silently; when budgets alone stood in the way, the task pauses instead.

The router is pure decision-making: the orchestrator hands it the spend so far and the pass
rates from the store, calls the providers, and records every note on the attempt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from shipyard.config import PriceSettings, RouterSettings, TierSettings
from shipyard.generate._cost import price_call
from shipyard.generate._reply import REPLY_FORMAT
from shipyard.generate._retry import RetryPolicy

__all__ = [
    "FREE_PROVIDERS",
    "Breaker",
    "Limit",
    "Plan",
    "Rate",
    "Router",
    "Spend",
]

FREE_PROVIDERS = frozenset({"template", "replay"})
"""Providers that spend no tokens, so no budget can stop them."""

_CHARS_PER_TOKEN = 3
"""A deliberately low estimate (code tokenizes densely): budgets err on the safe side."""


@dataclass(frozen=True, kw_only=True)
class Spend:
    usd: Decimal = Decimal(0)
    tokens: int = 0

    def __add__(self, other: Spend) -> Spend:
        return Spend(usd=self.usd + other.usd, tokens=self.tokens + other.tokens)


@dataclass(frozen=True, kw_only=True)
class Limit:
    """One budget: what it allows and what is already spent against it."""

    scope: str
    """What it covers, for people: ``task``, ``domain storefront today``, ``all domains today``."""
    usd: Decimal | None
    """The currency limit, None for none."""
    tokens: int | None
    """The token limit, None for none."""
    spent: Spend
    """Spend so far in the scope."""

    def broken_by(self, call: Spend) -> str:
        """Why ``call`` would break this limit, or '' when it fits."""
        after = self.spent + call
        if self.usd is not None and after.usd > self.usd:
            return (
                f"{self.scope} budget ${self.usd}: ${self.spent.usd:.4f} spent, "
                f"next call up to ${call.usd:.4f}"
            )
        if self.tokens is not None and after.tokens > self.tokens:
            return (
                f"{self.scope} budget {self.tokens} tokens: {self.spent.tokens} spent, "
                f"next call up to {call.tokens}"
            )
        return ""


@dataclass(frozen=True, kw_only=True)
class Rate:
    """A tier's recent record for one job kind."""

    passed: int
    rated: int

    def describe(self) -> str:
        if not self.rated:
            return "no attempts yet"
        return f"passed {self.passed}/{self.rated} ({self.passed / self.rated:.0%})"


@dataclass(kw_only=True)
class Plan:
    """The tiers to try for one attempt, in order, and the reasons so far."""

    tiers: list[str]
    notes: list[str] = field(default_factory=list)


class Breaker:
    """Per-tier circuit breaker: ``failures`` in a row take a tier out for ``cooldown`` s.

    After the cool-down one trial call is let through (half open) while the others still
    wait; the trial's failure re-opens the circuit at once, its success closes it. State is
    per process: each worker learns on its own, which is what a failing endpoint looks like
    from where that worker stands.
    """

    def __init__(
        self, *, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures, self.cooldown, self.clock = failures, cooldown, clock
        self._lock = threading.Lock()
        self._streak: dict[str, int] = {}
        self._open_until: dict[str, float] = {}
        self._trial: set[str] = set()

    def acquire(self, tier: str) -> float:
        """0 when ``tier`` may be called now (a trial, if half open); else seconds to wait."""
        with self._lock:
            until = self._open_until.get(tier)
            if until is None:
                return 0.0
            left = until - self.clock()
            if left > 0:
                return left
            if tier in self._trial:
                return max(self.cooldown, 1.0)  # a trial call is out; the rest keep waiting
            self._trial.add(tier)
            return 0.0

    def release(self, tier: str) -> None:
        """Give back a trial ``acquire`` granted when the call was not made after all."""
        with self._lock:
            self._trial.discard(tier)

    def succeeded(self, tier: str) -> None:
        with self._lock:
            self._streak.pop(tier, None)
            self._open_until.pop(tier, None)
            self._trial.discard(tier)

    def failed(self, tier: str) -> bool:
        """Count a failure; True when it opened (or re-opened) the circuit."""
        with self._lock:
            streak = self._streak.get(tier, 0) + 1
            self._streak[tier] = streak
            if streak >= self.failures or tier in self._trial:
                self._open_until[tier] = self.clock() + self.cooldown
                self._trial.discard(tier)
                return True
            return False


class Router:
    """Plans each attempt's tiers; the caller calls them in order and reports back."""

    def __init__(
        self,
        settings: RouterSettings,
        *,
        chain: Sequence[str],
        tiers: Mapping[str, TierSettings],
        prices: Mapping[str, PriceSettings],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.chain = list(chain)
        self.tiers = dict(tiers)
        self.prices = prices
        self.retry = RetryPolicy(tries=settings.tries_per_call)
        """How each call on a tier is retried (``[generate] tries_per_call``)."""
        self.breaker = Breaker(
            failures=settings.breaker_failures,
            cooldown=settings.breaker_cooldown_seconds,
            clock=clock,
        )

    def plan(
        self,
        requested: str,
        *,
        job_kind: str,
        failed_tier: str = "",
        rates: Mapping[str, Rate] | None = None,
    ) -> Plan:
        """The tiers to try, best first. ``failed_tier``: whose output failed the last checks."""
        if requested == "human":
            return Plan(tiers=[], notes=[f"job kind {job_kind} is written by a person"])
        if requested != "auto":
            return Plan(
                tiers=[requested, *self._below(requested)],
                notes=[f"job kind {job_kind} asks for tier {requested}"],
            )
        return self._auto(job_kind, failed_tier, rates or {})

    def _below(self, tier: str) -> list[str]:
        """The fallback chain from ``tier``: the cheaper tiers, nearest first."""
        if tier not in self.chain:
            return []
        return list(reversed(self.chain[: self.chain.index(tier)]))

    def _auto(self, job_kind: str, failed_tier: str, rates: Mapping[str, Rate]) -> Plan:
        threshold = self.settings.success_threshold
        notes: list[str] = []
        chosen = ""
        for tier in self.chain:
            rate = rates.get(tier, Rate(passed=0, rated=0))
            if rate.rated < self.settings.min_samples:
                chosen = tier
                notes.append(
                    f"auto: {tier} {rate.describe()}, fewer than "
                    f"{self.settings.min_samples} rated, so it gets its chance"
                )
                break
            if rate.passed / rate.rated >= threshold:
                chosen = tier
                notes.append(f"auto: {tier} {rate.describe()} ≥ {threshold:.0%}")
                break
            notes.append(f"auto: {tier} {rate.describe()} < {threshold:.0%}")
        if not chosen:
            chosen = self.chain[-1]
            notes.append(f"auto: no tier reaches {threshold:.0%}; taking the top one, {chosen}")
        if failed_tier in self.chain:
            # A repair climbs one tier above the output that failed (the top repairs its own).
            target = min(self.chain.index(failed_tier) + 1, len(self.chain) - 1)
            if self.chain.index(chosen) < target:
                chosen = self.chain[target]
                notes.append(f"auto: {failed_tier}'s output failed its checks; repair on {chosen}")
        return Plan(tiers=[chosen, *self._below(chosen)], notes=notes)

    def estimate(self, tier: str, prompt: str) -> Spend:
        """The most the next call on ``tier`` can spend: the prompt plus a full-length reply."""
        settings = self.tiers[tier]
        if settings.provider in FREE_PROVIDERS:
            return Spend()
        input_tokens = (len(REPLY_FORMAT) + len(prompt)) // _CHARS_PER_TOKEN + 1
        cost = price_call(
            provider=settings.provider,
            model=settings.model,
            input_tokens=input_tokens,
            output_tokens=settings.max_tokens,
            overrides=self.prices,
        )
        return Spend(usd=cost.usd, tokens=input_tokens + settings.max_tokens)

    def over_budget(self, tier: str, prompt: str, limits: Sequence[Limit]) -> str:
        """Which budget the next call on ``tier`` could break ('' when it fits them all)."""
        call = self.estimate(tier, prompt)
        if call.usd or call.tokens:  # a free call breaks no budget
            for limit in limits:
                reason = limit.broken_by(call)
                if reason:
                    return f"{tier} skipped: {reason}"
        return ""

    def blocked(self, tier: str, prompt: str, limits: Sequence[Limit]) -> tuple[str, bool]:
        """Why ``tier`` may not be called now ('' when it may), and whether a budget is why.

        When it may, the caller must report the call's end to ``breaker`` (succeeded or
        failed): a half-open circuit has let this call through as its trial.
        """
        reason = self.over_budget(tier, prompt, limits)
        if reason:
            return reason, True
        wait = self.breaker.acquire(tier)
        if wait > 0:
            return f"{tier} skipped: out of service for {wait:.0f} s after repeated failures", False
        return "", False
