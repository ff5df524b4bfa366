"""Governance through the pipeline: policy at the door and the gate, two approvers, escalation,
and the audit log that records it all (and notices when it is edited)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, update

from shipyard.config import Project, load_project
from shipyard.errors import PolicyDenied, StateError
from shipyard.jobs import BatchRow
from shipyard.observe import audit
from shipyard.service import (
    Runtime,
    approval_queue,
    approve,
    escalate_overdue,
    provide,
    submit,
    task_story,
)
from shipyard.store import AuditHeadRow, AuditRow, TaskRow
from shipyard.testing import ScriptedProvider
from support import PRODUCT, SETTLED, run_cli, wait_for_state, wait_until_finished


def one(rt: Runtime, by: str = "me") -> str:
    result = submit(
        rt, rt.jobs.get("landing-page"), [BatchRow(where="t", data=PRODUCT)], submitted_by=by
    )
    return result.submitted[0]


def edit(project: Project, old: str, new: str) -> Project:
    path = project.config_path
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return load_project(project.root)


def actions(rt: Runtime, task_id: str) -> list[tuple[str, str]]:
    with rt.sessions() as session:
        return [(e.action, e.decision) for e in audit.entries(session, task_id=task_id)]


def test_high_risk_in_production_needs_two_distinct_approvers(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    project = edit(project, 'risk = "medium"', 'risk = "high"')  # the storefront target
    rt = start_worker(project)
    task_id = one(rt)
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    task = task_story(rt, task_id).task
    assert (task.risk, task.approvals_required) == ("high", 2)
    gate = next(s for s in task_story(rt, task_id).steps if s.stage == "gate")
    assert "2 distinct approval(s) needed" in gate.summary
    assert "customer-facing-needs-approval" in gate.summary

    assert approve(rt, task_id, actor="alice").state == "waiting_approval"
    [waiting] = approval_queue(rt)
    assert waiting.approvers == ["alice"]
    with pytest.raises(StateError, match="already approved"):
        approve(rt, task_id, actor="alice")
    with pytest.raises(PolicyDenied, match="cannot also approve"):
        approve(rt, task_id, actor="me")  # the submitter
    assert approve(rt, task_id, actor="bob").state == "approved"
    assert wait_until_finished(rt, task_id) == "published"

    story = task_story(rt, task_id)
    assert story.provenance is not None
    assert [a["actor"] for a in story.provenance.record["approvals"]] == ["alice", "bob"]
    recorded = actions(rt, task_id)
    assert recorded[0] == ("submit", "allow")
    assert ("release", "needs_approval") in recorded
    assert ("approve", "deny") in recorded  # the submitter's attempt is on the record too
    # ... and so is alice's second approval, refused: one person counts once.
    assert [d for a, d in recorded if a == "approve"] == ["approved", "deny", "deny", "approved"]
    assert recorded[-2:] == [("call_tool", "done"), ("close", "published")]


def test_someone_without_the_role_may_not_submit_or_approve(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(project)
    with pytest.raises(PolicyDenied, match="mallory may not submit job kind landing-page"):
        one(rt, by="mallory")
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(TaskRow)) == 0  # nothing half-done
        [entry] = audit.entries(session)
    assert (entry.actor, entry.action, entry.decision) == ("mallory", "submit", "deny")
    assert entry.reason == "denied: no policy permits it (default deny)"

    task_id = one(rt)
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    with pytest.raises(PolicyDenied, match="mallory may not approve"):
        approve(rt, task_id, actor="mallory")
    assert task_story(rt, task_id).task.state == "waiting_approval"


def test_an_overdue_approval_is_escalated_once_and_shown(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    project = edit(project, "escalate_after_minutes = 240", "escalate_after_minutes = 30")
    rt = start_worker(project)
    task_id = one(rt)
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"

    now = datetime.now(UTC)
    assert escalate_overdue(rt, now=now + timedelta(minutes=29)) == []
    assert escalate_overdue(rt, now=now + timedelta(minutes=31)) == [task_id]
    assert escalate_overdue(rt, now=now + timedelta(minutes=90)) == []  # once only
    [waiting] = approval_queue(rt)
    assert "escalated to demo-operator" in waiting.escalation
    assert ("escalate", "escalated") in actions(rt, task_id)
    shown = run_cli(project.root, "approvals")
    assert "escalated to demo-operator" in shown.stdout


def test_audit_verify_passes_after_a_run_and_names_the_first_edited_entry(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(project)
    task_id = one(rt)
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    approve(rt, task_id, actor="alice")
    assert wait_until_finished(rt, task_id) == "published"
    ok = run_cli(project.root, "audit", "verify")
    assert ok.returncode == 0 and "audit log intact" in ok.stdout
    assert actions(rt, task_id) == [
        ("submit", "allow"),
        ("generate", "template"),
        ("release", "needs_approval"),
        ("approve", "approved"),
        ("call_tool", "done"),
        ("close", "published"),
    ]

    # Someone edits entry 3 by hand: verify names it.
    with rt.sessions() as session, session.begin():
        session.execute(update(AuditRow).where(AuditRow.seq == 3).values(actor="nobody"))
    broken = run_cli(project.root, "audit", "verify")
    assert broken.returncode == 1
    assert "broken at entry 3" in broken.stderr and "changed after it was written" in broken.stderr

    exported = run_cli(project.root, "audit", "export", "--task", task_id)
    assert exported.returncode == 0 and exported.stdout.count("\n") >= 5
    assert '"prev_hash"' in exported.stdout


def test_removing_entries_from_the_end_is_noticed(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(project)
    task_id = one(rt)
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    with rt.sessions() as session, session.begin():
        last = session.scalar(select(func.max(AuditRow.seq)))
        session.execute(delete(AuditRow).where(AuditRow.seq == last))
    with rt.sessions() as session:
        check = audit.verify(session)
    assert not check.ok and "removed from the end" in check.problem
    with rt.sessions() as session, session.begin():
        session.execute(delete(AuditRow).where(AuditRow.seq == 1))  # and one before the rest
    with rt.sessions() as session:
        check = audit.verify(session)
    assert (check.ok, check.first_broken) == (False, 1)
    assert "entry 1 is missing (the next one is 2)" in check.problem
    with rt.sessions() as session:
        assert session.scalar(select(AuditHeadRow.seq)) == last


def test_when_repairs_run_out_a_job_kind_can_escalate_to_a_person(
    project: Project, start_worker: Callable[..., Runtime]
) -> None:
    job = project.root / "jobs" / "landing-page" / "job.toml"
    job.write_text(
        job.read_text().replace("max_attempts = 3", 'max_attempts = 2\non_exhausted = "person"')
    )
    bad = "<!DOCTYPE html><html><body><p>no title</p></body></html>\n"
    rt = start_worker(load_project(project.root), ScriptedProvider([{"index.html": bad}]))
    task_id = one(rt)
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_input"
    attempts = task_story(rt, task_id).attempts
    assert [(a.number, a.tier, a.passed) for a in attempts] == [
        (1, "template", False),
        (2, "template", False),
        (3, "human", None),
    ]
    assert "on_exhausted = person" in attempts[-1].route
    assert attempts[-1].feedback  # the person sees what the last attempt got wrong

    provide(rt, task_id, {"index.html": bad}, actor="alice")  # the person's code fails too
    assert wait_until_finished(rt, task_id) == "failed"
    assert task_story(rt, task_id).task.error == "checks failed 3×"
