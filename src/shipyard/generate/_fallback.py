"""Fallback as an object: how one attempt walks its plan's tiers (see ``_retry`` for how one
tier's call is retried).

``TierWalk`` tries a plan's tiers in order:
each tier must first pass the caller's admission checks (policy, budgets, the router's
circuit breaker, a rate window), then is called; a failure counts against the tier's
breaker and the walk falls back to the next. Every step leaves a note, so an attempt can
say exactly why its code came from where it did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from shipyard.errors import ConfigError, ProviderError
from shipyard.generate._router import Breaker

__all__ = ["Admission", "TierWalk", "Walked"]

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Admission:
    """Why a tier may not be called now, as one admission check decided."""

    reason: str
    """A note for the attempt's route, naming the tier and the cause."""
    budget: bool = False
    """True when a budget is the cause (only budgets standing in the way pause a task)."""


@dataclass(kw_only=True)
class Walked(Generic[T]):
    """Where a walk over the tiers ended."""

    tier: str = ""
    """The tier that served, '' when none did."""
    result: T | None = None
    """What the serving tier's call returned."""
    notes: list[str] = field(default_factory=list)
    """Every tier's fate, in order."""
    budget_blocked: bool = False
    other_blocked: bool = False

    @property
    def paused(self) -> bool:
        """Nothing served, and only budgets stood in the way (the task waits for money)."""
        return self.tier == "" and self.budget_blocked and not self.other_blocked


class TierWalk:
    """Tries tiers in order until one serves.

    ``admit`` checks run before the breaker's (policy, the router's budget estimate);
    ``reserve`` checks run after the breaker let the call through (a budget hold), so a
    refusal there gives the breaker's trial back. ``undo`` is called when a call fails after
    the reservations were made.
    """

    def __init__(
        self,
        breaker: Breaker,
        *,
        admit: Sequence[Callable[[str], Admission | None]] = (),
        reserve: Sequence[Callable[[str], Admission | None]] = (),
        undo: Callable[[str], None] = lambda tier: None,
    ) -> None:
        self.breaker = breaker
        self.admit, self.reserve, self.undo = list(admit), list(reserve), undo

    def run(self, tiers: Sequence[str], call: Callable[[str], T], notes: list[str]) -> Walked[T]:
        walked: Walked[T] = Walked(notes=notes)
        for tier in tiers:
            refused = self._refusal(tier)
            if refused is not None:
                walked.notes.append(refused.reason)
                walked.budget_blocked |= refused.budget
                walked.other_blocked |= not refused.budget
                continue
            try:
                walked.result = call(tier)
            except ProviderError as exc:
                self.undo(tier)
                walked.other_blocked = True
                # "Nothing here" (404) says the service answered; the rest counts against it.
                if exc.details.get("status") == 404:
                    self.breaker.succeeded(tier)
                    opened = False
                else:
                    opened = self.breaker.failed(tier)
                walked.notes.append(
                    f"{tier} failed: {exc.message}"
                    + (" (now out of service for a cool-down)" if opened else "")
                )
                continue
            except ConfigError as exc:
                self.undo(tier)
                walked.other_blocked = True
                self.breaker.failed(tier)
                walked.notes.append(f"{tier} unavailable: {exc.message}")
                continue
            self.breaker.succeeded(tier)
            walked.tier = tier
            return walked
        return walked

    def _refusal(self, tier: str) -> Admission | None:
        for check in self.admit:
            refused = check(tier)
            if refused is not None:
                return refused
        wait = self.breaker.acquire(tier)
        if wait > 0:
            return Admission(
                reason=f"{tier} skipped: out of service for {wait:.0f} s after repeated failures"
            )
        for check in self.reserve:
            refused = check(tier)
            if refused is not None:
                self.breaker.release(tier)
                return refused
        return None
