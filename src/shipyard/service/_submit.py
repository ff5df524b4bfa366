"""Submitting work: inputs validated at the door, every row recorded as a task, the valid
ones enqueued on their domain's queue. No worker needs to be running: one picks the work up
when it starts."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shipyard.errors import InputError
from shipyard.jobs import BatchRow, JobKind, inputs_hash, kept_of_refused, validate_inputs
from shipyard.model import TaskState
from shipyard.orchestrator import Runtime, enqueue_pending, govern
from shipyard.store import TaskRow, transaction

__all__ = ["Rejected", "SubmitResult", "new_id", "submit"]


@dataclass(frozen=True, kw_only=True)
class Rejected:
    """A row refused at the door, with the reason that names its row and field."""

    where: str
    message: str
    task_id: str


@dataclass(frozen=True, kw_only=True)
class SubmitResult:
    submitted: list[str] = field(default_factory=list)
    """Ids of the tasks enqueued."""
    rejected: list[Rejected] = field(default_factory=list)
    """Rows that did not fit the schema (recorded as ``invalid`` tasks, never run)."""
    batch_id: str = ""


def new_id(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"


def submit(
    rt: Runtime,
    kind: JobKind,
    rows: Iterable[BatchRow],
    *,
    submitted_by: str,
) -> SubmitResult:
    """Validate each row; record every row as a task; enqueue the valid ones.

    A bad row never stops the others: it is recorded as an ``invalid`` task with its reason.
    """
    if not submitted_by.strip():
        raise InputError("submitter is empty", hint="pass --as NAME or set SHIPYARD_USER")
    rows = list(rows)
    subject = govern.job_kind(kind)
    request = govern.person_request(rt, submitted_by, "submit", subject, {"rows": len(rows)})
    verdict = govern.require(rt, request, actor=submitted_by, subject=subject)
    batch_id = new_id("b")
    result = SubmitResult(batch_id=batch_id)
    now = datetime.now(UTC)
    valid: list[str] = []
    with transaction(rt.sessions) as session:
        for row in rows:
            task_id = new_id("t")
            try:
                inputs = validate_inputs(kind, row.data, where=row.where)
                state, error = TaskState.QUEUED, ""
                valid.append(task_id)
            except InputError as exc:
                inputs = kept_of_refused(row.data)
                state, error = TaskState.INVALID, exc.message
                result.rejected.append(
                    Rejected(where=row.where, message=exc.message, task_id=task_id)
                )
            session.add(
                TaskRow(
                    id=task_id,
                    domain=kind.domain,
                    job_kind=kind.name,
                    input_key=str(inputs.get(kind.input_key, "")),
                    inputs=inputs,
                    inputs_hash=inputs_hash(inputs),
                    source=row.where,
                    batch_id=batch_id,
                    state=state.value,
                    submitted_by=submitted_by,
                    submitted_at=now,
                    updated_at=now,
                    finished_at=now if state.terminal else None,
                    error=error,
                )
            )
            govern.record(
                session,
                actor=submitted_by,
                action="submit",
                subject=subject,
                decision="allow" if state is TaskState.QUEUED else "invalid",
                reason=verdict.reason() if state is TaskState.QUEUED else error,
                task_id=task_id,
                detail={"batch": batch_id, "source": row.where},
            )
    if valid:
        enqueue_pending(rt.project, rt.sessions, valid)
    result.submitted.extend(valid)
    return result
