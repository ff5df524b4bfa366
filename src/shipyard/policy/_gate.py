"""The gate: does a checked artifact go out by itself, wait for a person, or not go at all?"""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.jobs import JobKind
from shipyard.model import CheckReport, GateOutcome, Risk

__all__ = ["GateDecision", "decide"]


@dataclass(frozen=True, kw_only=True)
class GateDecision:
    outcome: GateOutcome
    """auto, needs_approval or deny."""
    reason: str
    """Why, in a sentence that goes on the record."""


def decide(kind: JobKind, report: CheckReport) -> GateDecision:
    """The rule: failed checks never pass; publishing or high-risk work waits for a person."""
    if not report.passed:
        return GateDecision(outcome=GateOutcome.DENY, reason="the checks did not pass")
    if kind.publish:
        return GateDecision(
            outcome=GateOutcome.NEEDS_APPROVAL,
            reason=f"job kind {kind.name!r} publishes to customers: a person approves first",
        )
    if kind.risk is Risk.HIGH:
        return GateDecision(
            outcome=GateOutcome.NEEDS_APPROVAL,
            reason=f"job kind {kind.name!r} is high risk: a person approves first",
        )
    return GateDecision(outcome=GateOutcome.AUTO, reason=f"{kind.risk} risk, checks passed")
