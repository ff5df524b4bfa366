"""What policies see of a repository change (``context.change``): the built-in policy's one
approval, and the documented example's two approvers under pricing/ and no new
dependencies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipyard.model import CheckReport, CheckResult, GateOutcome, Risk
from shipyard.policy import GateDecision, Policies, change_context, entities, gate

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "docs" / "policies" / "repo-changes.cedar"


def decide(policies: Policies, change: dict[str, Any] | None, *, risk: str = "low") -> GateDecision:
    agent, agent_entities = entities.agent("code")
    kind, kind_entities = entities.job_kind("repo-change:shop", "code", risk=risk, publish=False)
    return gate(
        policies,
        principal=agent,
        resource=kind,
        entities=[*agent_entities, *kind_entities],
        report=CheckReport(results=(CheckResult(check="test", passed=True),)),
        base_risk=[Risk(risk)],
        diff_lines=3,
        large_diff_lines=400,
        cost_microusd=0,
        target="repo:shop",
        environment="repository",
        change=change,
    )


def facts(*paths: str, new: tuple[str, ...] = ()) -> dict[str, Any]:
    return change_context(
        repo="shop",
        paths=paths,
        lines_added=2,
        lines_removed=1,
        new_dependencies=new,
        tests_passed=12,
        tests_failed=0,
    )


def test_folders_hold_every_folder_of_every_path() -> None:
    found = facts("pricing/rules/vat.py", "README.md")
    assert found["folders"] == ["pricing/", "pricing/rules/"]
    assert found["paths"] == ["README.md", "pricing/rules/vat.py"] and found["files"] == 2


def test_the_built_in_policy_holds_every_change_for_one_approval() -> None:
    policies = Policies.load([])
    low = decide(policies, None)
    assert low.outcome is GateOutcome.AUTO  # the same low-risk work without a change goes out
    held = decide(policies, facts("src/app.py"))
    assert (held.outcome, held.approvals) == (GateOutcome.NEEDS_APPROVAL, 1)
    assert held.context["change"]["tests_passed"] == 12


def test_the_documented_example_wants_two_approvers_under_pricing() -> None:
    policies = Policies.load([EXAMPLE_POLICY])
    elsewhere = decide(policies, facts("src/app.py"))
    assert (elsewhere.outcome, elsewhere.approvals) == (GateOutcome.NEEDS_APPROVAL, 1)
    pricing = decide(policies, facts("pricing/rules/vat.py", "src/app.py"))
    assert (pricing.outcome, pricing.approvals) == (GateOutcome.NEEDS_APPROVAL, 2)
    assert "repo-changes-two-approvers-for-pricing" in pricing.reason


def test_the_documented_example_refuses_new_dependencies() -> None:
    policies = Policies.load([EXAMPLE_POLICY])
    denied = decide(policies, facts("src/app.py", new=("requests",)))
    assert denied.outcome is GateOutcome.DENY
    assert "no-new-dependencies" in denied.reason
