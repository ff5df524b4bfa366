"""`shipyard policy activate` is a Cedar action (activate_policy) of the authenticated person,
decided before anything changes, and audited either way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from people._helpers import waiting_task
from shipyard.config import Project
from shipyard.service import Runtime, create_token
from shipyard.store import AuditRow
from support import run_cli

LOOSER = """
// Anyone may resume a paused task of the storefront's (a candidate to replay).
@id("anyone-resumes")
permit(principal, action == Action::"provide", resource in Domain::"storefront");
"""


def candidate_and_report(
    project: Project, tmp_path: Path, env: dict[str, str]
) -> tuple[Path, Path]:
    """A candidate policy (the live one plus a permit) and its replay report."""
    candidate = tmp_path / "candidate.cedar"
    candidate.write_text(project.policy_files[0].read_text() + LOOSER)
    report = tmp_path / "report.json"
    done = run_cli(
        project.root, "replay", "--policy", str(candidate), "--out", str(report), env=env
    )
    assert done.returncode == 0, done.stderr
    return candidate, report


def token(project: Project, person: str) -> dict[str, str]:
    rt = Runtime.open(project)
    try:
        return {"SHIPYARD_TOKEN": create_token(rt, person, "admin", actor="ops")[1]}
    finally:
        rt.close()


def entries(project: Project) -> list[AuditRow]:
    rt = Runtime.open(project)
    try:
        with rt.sessions() as session:
            query = select(AuditRow).where(AuditRow.action == "activate_policy")
            return list(session.scalars(query.order_by(AuditRow.seq)))
    finally:
        rt.close()


def test_activation_needs_activate_policy_and_is_audited(
    project: Project, tmp_path: Path, start_worker: Callable[..., Runtime]
) -> None:
    waiting_task(start_worker(project))  # a task recorded, to replay
    # shop-owner is in the example's people but not a policy admin.
    ops, owner = token(project, "ops"), token(project, "shop-owner")
    candidate, report = candidate_and_report(project, tmp_path, ops)
    live = project.policy_files[0]
    before = live.read_text()

    denied = run_cli(
        project.root,
        "policy",
        "activate",
        str(candidate),
        "--replay-report",
        str(report),
        env=owner,
    )
    assert denied.returncode == 6, denied.stderr
    assert "shop-owner may not activate_policy policy policies/storefront.cedar" in denied.stderr
    assert live.read_text() == before  # nothing changed
    [refusal] = entries(project)
    assert (refusal.actor, refusal.decision) == ("shop-owner", "deny")

    done = run_cli(
        project.root, "policy", "activate", str(candidate), "--replay-report", str(report), env=ops
    )
    assert done.returncode == 0, done.stderr
    assert "activated by ops" in done.stdout
    assert live.read_text() == candidate.read_text()
    refusal, activation = entries(project)
    assert (activation.actor, activation.decision) == ("ops", "done")
    assert activation.detail["principal"] == "ops"
    assert "admins-activate-policies" in activation.detail["policy"]


def test_without_a_permit_no_one_activates(
    project: Project, tmp_path: Path, start_worker: Callable[..., Runtime]
) -> None:
    waiting_task(start_worker(project))
    live = project.policy_files[0]
    # The live policy without its activate_policy permit: the default deny holds.
    live.write_text(live.read_text().split('@id("admins-activate-policies")')[0])
    ops = token(project, "ops")
    candidate, report = candidate_and_report(project, tmp_path, ops)
    denied = run_cli(
        project.root, "policy", "activate", str(candidate), "--replay-report", str(report), env=ops
    )
    assert denied.returncode == 6, denied.stderr
    assert (
        "ops may not activate_policy" in denied.stderr and "no policy permits it" in denied.stderr
    )
    assert (
        "admins-activate-policies" not in live.read_text()
        and "anyone-resumes" not in live.read_text()
    )
