"""Cedar policies: loading with file-and-line errors, the example's matrix, the gate's rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shipyard.errors import ConfigError
from shipyard.model import CheckReport, CheckResult, Finding, GateOutcome, Risk
from shipyard.policy import (
    DEFAULT_POLICY,
    GateDecision,
    Policies,
    Request,
    assess_risk,
    entities,
    gate,
)
from support import EXAMPLE

STOREFRONT = EXAMPLE / "policies" / "storefront.cedar"


def write(tmp_path: Path, text: str, name: str = "p.cedar") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '// first\npermit(principal, action == Action::"submit", resource);\n\n'
        "permit(principal, action, resource)\n  when { context.rows > };\n",
    )
    with pytest.raises(ConfigError) as caught:
        Policies.load([path])
    assert caught.value.message.startswith(f"{path}:4: ")
    assert "unexpected token" in caught.value.message


def test_a_policy_that_does_not_fit_the_schema_names_file_line_and_problem(
    tmp_path: Path,
) -> None:
    good = write(tmp_path, 'permit(principal, action == Action::"submit", resource);\n', "a.cedar")
    bad = write(
        tmp_path,
        "// a comment; with a semicolon\n"
        'permit(principal, action == Action::"submit", resource);\n'
        '@id("typo")\npermit(principal, action == Action::"release", resource)\n'
        "  when { context.aprovals >= 1 };\n",
        "b.cedar",
    )
    with pytest.raises(ConfigError) as caught:
        Policies.load([good, bad])
    message = caught.value.message
    assert message.startswith(f"{bad}:3: ")
    assert "aprovals" in message and "policy1" not in message


@pytest.mark.parametrize(
    ("text", "problem"), [("", "holds no policy"), ("// only a comment\n", "holds no policy")]
)
def test_a_file_without_policies_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        Policies.load([write(tmp_path, text)])


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="policy file not found"):
        Policies.load([tmp_path / "absent.cedar"])


def test_verdicts_name_the_deciding_policies_by_file_line_and_id() -> None:
    policies = Policies.load([STOREFRONT])
    shop, shop_entities = entities.person("shop-owner", ["merchandiser"])
    kind, kind_entities = entities.job_kind(
        "landing-page", "storefront", risk="medium", publish=True
    )
    allowed = policies.authorize(
        Request(
            principal=shop,
            action="submit",
            resource=kind,
            context={"rows": 3},
            entities=[*shop_entities, *kind_entities],
        )
    )
    assert allowed.allowed
    assert allowed.reason() == "allowed by storefront.cedar:5 (merchandisers-submit)"
    stranger, stranger_entities = entities.person("mallory", [])
    denied = policies.authorize(
        Request(
            principal=stranger,
            action="submit",
            resource=kind,
            context={"rows": 3},
            entities=[*stranger_entities, *kind_entities],
        )
    )
    assert not denied.allowed
    assert denied.reason() == "denied: no policy permits it (default deny)"


def report(*findings: Finding, passed: bool = True) -> CheckReport:
    return CheckReport(results=(CheckResult(check="html", passed=passed, findings=findings),))


def decide(
    policies: Policies, *, publish: bool, risk: str = "medium", **kw: object
) -> GateDecision:
    agent, agent_entities = entities.agent("storefront")
    kind, kind_entities = entities.job_kind("k", "storefront", risk=risk, publish=publish)
    args: dict[str, object] = {
        "report": report(),
        "base_risk": [Risk(risk)],
        "diff_lines": 10,
        "large_diff_lines": 400,
        "cost_microusd": 0,
        "target": "site",
        "environment": "production",
    } | kw
    return gate(
        policies,
        principal=agent,
        resource=kind,
        entities=[*agent_entities, *kind_entities],
        **args,  # type: ignore[arg-type]
    )


def test_the_built_in_policy_releases_low_risk_work_and_holds_publishing_work() -> None:
    policies = Policies.load([])
    assert policies.files == [DEFAULT_POLICY]
    auto = decide(policies, publish=False, risk="low")
    assert auto.outcome is GateOutcome.AUTO
    held = decide(policies, publish=True)
    assert (held.outcome, held.approvals) == (GateOutcome.NEEDS_APPROVAL, 1)
    failed = decide(policies, publish=False, risk="low", report=report(passed=False))
    assert failed.outcome is GateOutcome.DENY
    assert "no policy permits it" in failed.reason


def test_the_storefront_needs_two_approvers_for_high_risk_in_production() -> None:
    policies = Policies.load([STOREFRONT])
    medium = decide(policies, publish=True)
    assert (medium.outcome, medium.approvals) == (GateOutcome.NEEDS_APPROVAL, 1)
    # Warnings in the checks raise medium to high: two people must approve.
    warned = decide(
        policies,
        publish=True,
        report=report(Finding(rule="html.style", message="inline style", severity="warning")),
    )
    assert (warned.risk, warned.approvals) == (Risk.HIGH, 2)
    assert (
        "with 1, forbidden by storefront.cedar:24 (high-risk-production-needs-two)" in warned.reason
    )
    assert "customer-facing-needs-approval" in warned.reason
    # Outside production one approval is enough even at high risk.
    staging = decide(policies, publish=True, risk="high", environment="staging")
    assert staging.approvals == 1


def test_risk_is_the_higher_of_kind_and_target_raised_by_warnings_and_large_diffs() -> None:
    assert (
        assess_risk([Risk.LOW, Risk.MEDIUM], warnings=0, diff_lines=0, large_diff_lines=10)[0]
        is Risk.MEDIUM
    )
    risk, why = assess_risk([Risk.LOW], warnings=1, diff_lines=11, large_diff_lines=10)
    assert risk is Risk.HIGH
    assert why[1] == "raised to medium: 1 warning(s) in the checks"
    assert why[2] == "raised to high: 11 changed line(s) > 10"


def test_the_examples_policy_tests_all_hold(tmp_path: Path) -> None:
    from support import run_cli

    root = tmp_path / "shop"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".shipyard"))
    done = run_cli(root, "policy", "test", str(root / "policies" / "tests.toml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "15 of 15 as expected" in done.stdout
    # A case that expects the wrong answer fails the command and is marked.
    cases = root / "policies" / "tests.toml"
    cases.write_text(cases.read_text().replace('expect = "deny"', 'expect = "allow"', 1))
    wrong = run_cli(root, "policy", "test", str(root / "policies" / "tests.toml"))
    assert wrong.returncode == 1 and "14 of 15 as expected" in wrong.stdout


def test_a_case_that_does_not_fit_the_schema_is_an_error_not_a_deny(tmp_path: Path) -> None:
    from support import run_cli

    root = tmp_path / "shop"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".shipyard"))
    cases = root / "cases.toml"
    cases.write_text(
        '[[case]]\nname = "typo"\nagent = "storefront"\naction = "release"\n'
        'job_kind = "landing-page"\ncontext = { aprovals = 1 }\nexpect = "deny"\n'
    )
    done = run_cli(root, "policy", "test", str(cases))
    assert done.returncode == 2
    assert "case 1: the request does not fit Shipyard's schema" in done.stderr
    assert "aprovals" in done.stderr
