"""The gate: does a checked artifact go out by itself, after one or two approvals, or never?

Policy decides. The gate asks the ``release`` action with ``approvals`` = 0, 1 and 2: the
first count the policies allow is the number of distinct people who must approve (0: it goes
out by itself); when no count is allowed, the artifact is denied. The context carries the
assessed risk: the higher of the job kind's and the target's, raised one level by warnings
in the check report and one more by a large change against what was released before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipyard.model import CheckReport, GateOutcome, Risk
from shipyard.policy._cedar import Policies, Request, Verdict

__all__ = ["MAX_APPROVALS", "GateDecision", "assess_risk", "change_context", "gate"]

MAX_APPROVALS = 2
"""Approvals the gate asks about: none, one, or two distinct people."""

_ORDER = [Risk.LOW, Risk.MEDIUM, Risk.HIGH]


def _raise(risk: Risk) -> Risk:
    return _ORDER[min(_ORDER.index(risk) + 1, len(_ORDER) - 1)]


def assess_risk(
    base: Sequence[Risk], *, warnings: int, diff_lines: int, large_diff_lines: int
) -> tuple[Risk, list[str]]:
    """The assessed risk and the reasons it is what it is."""
    risk = max(base, key=_ORDER.index)
    why = [f"{risk} risk by its job kind and target"]
    if warnings:
        risk = _raise(risk)
        why.append(f"raised to {risk}: {warnings} warning(s) in the checks")
    if diff_lines > large_diff_lines:
        risk = _raise(risk)
        why.append(f"raised to {risk}: {diff_lines} changed line(s) > {large_diff_lines}")
    return risk, why


@dataclass(frozen=True, kw_only=True)
class GateDecision:
    outcome: GateOutcome
    """auto, needs_approval or deny."""
    approvals: int
    """Distinct approvals required (0 for auto and deny)."""
    risk: Risk
    """The assessed risk."""
    reason: str
    """Why, in words that go on the record (the deciding policies included)."""
    context: dict[str, Any]
    """The context the policies saw (approvals = 0), kept with the decision."""


def gate(
    policies: Policies,
    *,
    principal: dict[str, str],
    resource: dict[str, str],
    entities: Sequence[dict[str, Any]],
    report: CheckReport,
    base_risk: Sequence[Risk],
    diff_lines: int,
    large_diff_lines: int,
    cost_microusd: int,
    target: str,
    environment: str,
    change: Mapping[str, Any] | None = None,
) -> GateDecision:
    """Whether the artifact goes out by itself, after how many approvals, or never (see the
    module docstring), with the reason and the context the policies saw. ``change``: a
    repository change's facts (``context.change``, see :func:`change_context`)."""
    warnings = sum(1 for f in report.findings if f.severity == "warning")
    risk, why = assess_risk(
        base_risk, warnings=warnings, diff_lines=diff_lines, large_diff_lines=large_diff_lines
    )
    context: dict[str, Any] = {
        "risk": risk.value,
        "checks_passed": report.passed,
        "warnings": warnings,
        "diff_lines": diff_lines,
        "cost_microusd": cost_microusd,
        "approvals": 0,
        "target": target,
        "environment": environment,
    }
    if change is not None:
        context["change"] = dict(change)
    requests = [
        Request(
            principal=principal,
            action="release",
            resource=resource,
            context=context | {"approvals": n},
            entities=entities,
        )
        for n in range(MAX_APPROVALS + 1)
    ]
    verdicts = policies.authorize_all(requests)
    outcome, approvals, reason = _fewest_approvals(verdicts)
    return GateDecision(
        outcome=outcome,
        approvals=approvals,
        risk=risk,
        reason=f"{reason} ({'; '.join(why)})",
        context=context,
    )


def _fewest_approvals(verdicts: Sequence[Verdict]) -> tuple[GateOutcome, int, str]:
    """(outcome, approvals needed, why) from the verdicts with 0, 1, 2... approvals: the
    first count allowed wins; none allowed denies."""
    for needed, verdict in enumerate(verdicts):
        if not verdict.allowed:
            continue
        if needed == 0:
            return GateOutcome.AUTO, 0, f"goes out by itself: {verdict.reason()}"
        fewer = verdicts[needed - 1].reason().removeprefix("denied: ")
        return (
            GateOutcome.NEEDS_APPROVAL,
            needed,
            f"{needed} distinct approval(s) needed: with {needed - 1}, {fewer}; "
            f"with {needed}, {verdict.reason()}",
        )
    return GateOutcome.DENY, 0, f"even with {MAX_APPROVALS} approvals: {verdicts[-1].reason()}"


def change_context(
    *,
    repo: str,
    paths: Sequence[str],
    lines_added: int,
    lines_removed: int,
    new_dependencies: Sequence[str],
    tests_passed: int,
    tests_failed: int,
) -> dict[str, Any]:
    """What a policy sees of a repository change as ``context.change``.

    ``folders`` holds every folder a changed path is in, each ending in ``/`` (``pricing/``,
    ``pricing/rules/``), because Cedar has no prefix test on a set: a policy asks
    ``context.change.folders.contains("pricing/")``. Counts that are not known are -1.
    """
    folders: set[str] = set()
    for path in paths:
        parts = path.split("/")[:-1]
        for end in range(1, len(parts) + 1):
            folders.add("/".join(parts[:end]) + "/")
    return {
        "repo": repo,
        "paths": sorted(paths),
        "folders": sorted(folders),
        "files": len(paths),
        "lines_added": lines_added,
        "lines_removed": lines_removed,
        "new_dependencies": sorted(new_dependencies),
        "tests_passed": tests_passed,
        "tests_failed": tests_failed,
    }
