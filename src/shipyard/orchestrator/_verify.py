"""The verification phase's durable steps: check an attempt in the sandbox, register the
passing output as a signed, content-addressed artifact, and let policy decide at the gate.

A re-run is harmless: checks overwrite their report, artifacts are content-addressed and
their rows inserted once, and the gate finds a decision it already made on the attempt.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shipyard.artifacts import changed_lines, previous_version, provenance_record, sign_provenance
from shipyard.checks import run_checks
from shipyard.errors import ShipyardError
from shipyard.jobs import JobKind, is_repo_change, repo_of
from shipyard.model import CheckReport, DecisionKind, GateOutcome, TaskState
from shipyard.orchestrator import _change as change
from shipyard.orchestrator import _govern as govern
from shipyard.orchestrator import _notify as notify
from shipyard.orchestrator._ledger import spend
from shipyard.orchestrator._runtime import Runtime, current_runtime
from shipyard.orchestrator._stage import _now, _task, stage, step
from shipyard.policy import change_context
from shipyard.store import (
    ArtifactRow,
    AttemptRow,
    AuditRow,
    DecisionRow,
    ProvenanceRow,
    TaskRow,
    insert_ignore,
    set_task_state,
    transaction,
)

__all__ = ["gate_step", "register_step", "sign", "verify_step"]


@step("shipyard.verify")
def verify_step(task_id: str, attempt: int) -> bool:
    """Run the job kind's checks on this attempt's output in the sandbox; store the report."""
    rt = current_runtime()
    with stage(rt, task_id, "verify", attempt) as record:
        with rt.sessions() as session:
            task = _task(session, task_id)
            kind = rt.jobs.get(task.job_kind)
            row = session.scalar(
                select(AttemptRow).where(
                    AttemptRow.task_id == task_id, AttemptRow.number == attempt
                )
            )
            if row is None:
                raise ShipyardError(f"task {task_id}: attempt {attempt} has no generation")
            if row.report is not None and row.passed is False and not row.files:
                record["summary"] = "nothing to check: the reply was malformed"
                return False
            if row.report is not None and row.passed is False and is_repo_change(kind):
                record["summary"] = "nothing to check: the change could not be made"
                return False
            files, inputs = dict(row.files), dict(task.inputs)
        rt.require_isolation_for(kind)
        facts: dict[str, Any] | None = None
        if is_repo_change(kind):
            verification = change.verify(rt, kind, task_id, inputs, attempt, files)
            report, facts = verification.report, dict(verification.facts)
        else:
            report = run_checks(
                kind, files, backend=rt.sandbox, limits=rt.limits, registry=rt.checks
            )
        end = time.time_ns()
        for result in reversed(report.results):  # the checks ran one after another
            start = end - int(result.duration_ms * 1e6)
            rt.tracing.finished_span(
                task_id,
                f"check {result.check}",
                start_ns=start,
                end_ns=end,
                attributes={
                    "shipyard.check": result.check,
                    "shipyard.check.passed": result.passed,
                    "shipyard.check.findings": len(result.findings),
                    "shipyard.sandbox": report.sandbox,
                },
                error="" if result.passed else f"{len(result.findings)} finding(s)",
            )
            end = start
        with transaction(rt.sessions) as session:
            values: dict[str, Any] = {
                "report": report.to_dict(),
                "passed": report.passed,
                "checked_at": _now(),
            }
            if facts is not None:
                stored = session.scalar(
                    select(AttemptRow.change).where(
                        AttemptRow.task_id == task_id, AttemptRow.number == attempt
                    )
                )
                values["change"] = dict(stored or {}) | {"facts": facts}
            session.execute(
                update(AttemptRow)
                .where(AttemptRow.task_id == task_id, AttemptRow.number == attempt)
                .values(**values)
            )
        failed = [r.check for r in report.results if not r.passed]
        record["summary"] = (
            f"{len(report.results)} check(s) passed"
            if report.passed
            else f"failed: {', '.join(failed)} ({len(report.findings)} finding(s))"
        )
        record["sandbox"] = report.sandbox
    return report.passed


@step("shipyard.register")
def register_step(task_id: str, attempt: int) -> str:
    """Store the passing output as a content-addressed artifact with its provenance."""
    rt = current_runtime()
    with stage(rt, task_id, "register") as record, transaction(rt.sessions) as session:
        task = _task(session, task_id)
        kind = rt.jobs.get(task.job_kind)
        row = session.scalar(
            select(AttemptRow).where(AttemptRow.task_id == task_id, AttemptRow.number == attempt)
        )
        if row is None or not row.passed:
            raise ShipyardError(f"task {task_id}: attempt {attempt} did not pass its checks")
        stored = rt.artifacts.put(row.files)  # rewrites files a gc may have removed
        session.execute(
            update(ArtifactRow)
            .where(ArtifactRow.id == stored.id, ArtifactRow.collected_at.is_not(None))
            .values(collected_at=None)
        )
        insert_ignore(
            session,
            ArtifactRow,
            {
                "id": stored.id,
                "job_kind": kind.name,
                "input_key": task.input_key,
                "files": stored.manifest,
                "size": stored.size,
                "created_at": _now(),
                "first_task_id": task_id,
            },
        )
        provenance = provenance_record(
            task, row, stored, template_hash=kind.template_hash, at=_now()
        )
        existing = session.get(ProvenanceRow, task_id)
        if existing is None:
            session.add(
                ProvenanceRow(
                    task_id=task_id, artifact_id=stored.id, record=provenance, created_at=_now()
                )
            )
            session.flush()
        task.artifact_id = stored.id
        sign(rt, session, task_id)
        record["summary"] = f"artifact {stored.id[:19]} ({len(stored.manifest)} file(s))"
        record["artifact"] = stored.id
    return stored.id


@step("shipyard.gate")
def gate_step(task_id: str, attempt: int) -> str:
    """Policy decides: release now, after N distinct approvals, or never (see policy.gate)."""
    rt = current_runtime()
    with stage(rt, task_id, "gate") as record, transaction(rt.sessions) as session:
        task = _task(session, task_id)
        kind = rt.jobs.get(task.job_kind)
        row = session.scalar(
            select(AttemptRow).where(AttemptRow.task_id == task_id, AttemptRow.number == attempt)
        )
        earlier = _gated_before(session, task_id, row)
        if earlier is not None:  # a run cut short after its decision was recorded
            record["summary"] = f"{earlier.decision}: {earlier.reason} (recorded before)"
            record["outcome"] = earlier.decision
            return earlier.decision
        report = CheckReport.from_dict(row.report if row is not None and row.report else {})
        subject = govern.job_kind(kind)
        facts = _change_facts(kind, row)
        decision = govern.gate_for(
            rt,
            kind,
            report,
            diff_lines=(
                facts["lines_added"] + facts["lines_removed"]
                if facts is not None
                else _diff_lines(rt, session, task, row.files if row is not None else {})
            ),
            cost_microusd=int(spend(session, task_id=task_id).usd * 1_000_000),
            change=facts,
        )
        task.risk, task.approvals_required = decision.risk.value, decision.approvals
        session.add(
            DecisionRow(
                task_id=task_id,
                decision=DecisionKind(f"policy:{decision.outcome.value}").value,
                actor="policy",
                reason=decision.reason,
                decided_at=_now(),
            )
        )
        govern.record(
            session,
            actor=f"agent {kind.domain}",
            action="release",
            subject=subject,
            decision=decision.outcome.value,
            reason=decision.reason,
            task_id=task_id,
            detail={"context": decision.context, "approvals_required": decision.approvals},
        )
        if decision.outcome is GateOutcome.NEEDS_APPROVAL:
            set_task_state(session, task_id, TaskState.WAITING_APPROVAL)
            notify.task_event(
                rt,
                session,
                task,
                type=notify.APPROVAL_NEEDED,
                key=f"{task_id}:approval.needed:{attempt}",
                waiting_for="approval",
                reason=decision.reason,
                risk=decision.risk.value,
                approvals_required=decision.approvals,
                attempt=attempt,
                artifact_id=task.artifact_id,
            )
        record["summary"] = f"{decision.outcome.value}: {decision.reason}"
        record["outcome"] = decision.outcome.value
        record["approvals"], record["risk"] = decision.approvals, decision.risk.value
    return decision.outcome.value


def _gated_before(session: Session, task_id: str, attempt: AttemptRow | None) -> AuditRow | None:
    """The gate's recorded decision on this attempt, when a run of the step already made it.

    The decision, its audit entry and the task's state commit together, before DBOS records
    the step's result; a worker killed in between leaves the step to run again, and it must
    not decide (and audit) twice. A later attempt (a person's code) is gated afresh.
    """
    if attempt is None or attempt.checked_at is None:
        return None
    checked = attempt.checked_at.isoformat(timespec="microseconds")
    return session.scalar(
        select(AuditRow)
        .where(AuditRow.task_id == task_id, AuditRow.action == "release", AuditRow.at >= checked)
        .order_by(AuditRow.seq.desc())
        .limit(1)
    )


def _change_facts(kind: JobKind, row: AttemptRow | None) -> dict[str, Any] | None:
    """``context.change`` for a repository change's attempt (None for other job kinds)."""
    if not is_repo_change(kind):
        return None
    record = dict(row.change or {}) if row is not None else {}
    summary, facts = dict(record.get("summary") or {}), dict(record.get("facts") or {})
    return change_context(
        repo=repo_of(kind),
        paths=[str(f["path"]) for f in summary.get("files", [])],
        lines_added=int(summary.get("lines_added", 0)),
        lines_removed=int(summary.get("lines_removed", 0)),
        new_dependencies=[str(d) for d in facts.get("new_dependencies", [])],
        tests_passed=int(facts.get("tests_passed", -1)),
        tests_failed=int(facts.get("tests_failed", -1)),
    )


def _diff_lines(rt: Runtime, session: Session, task: TaskRow, files: dict[str, Any]) -> int:
    """Lines changed against the version it replaces (all lines if none)."""
    previous = previous_version(session, task)
    before = rt.artifacts.read(rt.artifacts.get(previous.id)) if previous is not None else {}
    return changed_lines(before, {name: str(text) for name, text in files.items()})


def sign(rt: Runtime, session: Session, task_id: str) -> None:
    """(Re-)sign the task's provenance with the project's key, in ``session``."""
    sign_provenance(
        session,
        rt.artifacts,
        rt.signing_key,
        task_id,
        record_inputs=rt.project.settings.artifacts.record_inputs,
    )
