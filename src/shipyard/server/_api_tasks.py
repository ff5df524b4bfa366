"""``/api/v1/tasks`` and ``/api/v1/approvals``: submit, list and read tasks; the gate's queue
and a person's decisions (approve, reject, supply code, resume)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query

from shipyard.jobs import BatchRow
from shipyard.model import TaskState
from shipyard.server._deps import (
    Approver,
    Cursor,
    Limit,
    Operator,
    Reader,
    Rt,
    offset_of,
    page_of,
)
from shipyard.server._models import (
    BatchSubmission,
    ChangeSubmission,
    ChangeSubmitted,
    Decision,
    Story,
    Submission,
    Submitted,
    Supplied,
    Task,
    TaskPage,
    Trace,
    WaitingPage,
)
from shipyard.server._problems import problems
from shipyard.service import (
    Caller,
    Runtime,
    approval_queue,
    approve,
    list_tasks,
    provide,
    reject,
    resume,
    story_dict,
    submit,
    submit_change,
    task_dict,
    task_story,
    task_trace,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")

READ = problems(401, 429, 503)
"""What any route behind a token can answer with."""
BY_ID = problems(400, 404)
"""A route naming a task: unknown, or a prefix of more than one."""
DECIDING = problems(400, 403, 404, 409, 422)
"""A person's decision: a role or policy that forbids it, a state it does not fit."""


@router.get("/tasks", tags=["tasks"], responses={**READ, **problems(400, 422)})
def list_tasks_(
    rt: Rt,
    _who: Reader,
    state: Annotated[list[TaskState], Query(max_length=20)] = [],  # noqa: B006 (FastAPI copies)
    job_kind: Annotated[str, Query(max_length=64)] = "",
    batch: Annotated[str, Query(max_length=40)] = "",
    limit: Limit = 50,
    cursor: Cursor = "",
) -> TaskPage:
    """Tasks, oldest first, filtered by state, job kind or batch."""
    offset = offset_of(cursor)
    rows = list_tasks(
        rt, states=state, job_kind=job_kind, batch_id=batch, limit=limit + 1, offset=offset
    )
    return page_of(TaskPage, [task_dict(t) for t in rows], offset, limit)


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="The client's name for this request (printable ASCII, no spaces). A "
        "retry with the same key and body from the same person gets the first answer again "
        "(same status, same tasks); the same key with another body is a 409 problem. Keys "
        "are kept as long as the tasks: forever.",
    ),
]


def _submit(
    rt: Runtime, who: Caller, job_kind: str, rows: list[BatchRow], *, again: bool, key: str
) -> Submitted:
    result = submit(
        rt,
        rt.jobs.get(job_kind),
        rows,
        submitted_by=who.person,
        again=again,
        idempotency_key=key,
    )
    return Submitted.model_validate(result.as_data())


SUBMITTING = {**READ, **problems(400, 403, 404, 409, 422)}


@router.post("/tasks", status_code=201, tags=["tasks"], responses=SUBMITTING)
def submit_one(
    rt: Rt, body: Submission, who: Operator, idempotency_key: IdempotencyKey = None
) -> Submitted:
    """Submit one task; invalid inputs are recorded as an invalid task and listed. Inputs
    already submitted return their task (in ``existing``) unless ``again`` is true."""
    rows = [BatchRow(where="request", data=body.inputs)]
    return _submit(rt, who, body.job_kind, rows, again=body.again, key=idempotency_key or "")


@router.post("/tasks/batch", status_code=201, tags=["tasks"], responses=SUBMITTING)
def submit_batch(
    rt: Rt, body: BatchSubmission, who: Operator, idempotency_key: IdempotencyKey = None
) -> Submitted:
    """Submit many rows of one job kind; each bad row is named and the rest go on. Rows
    already submitted return their task (in ``existing``) unless ``again`` is true."""
    rows = [BatchRow(where=f"row {n}", data=row) for n, row in enumerate(body.rows, start=1)]
    return _submit(rt, who, body.job_kind, rows, again=body.again, key=idempotency_key or "")


@router.post("/changes", status_code=201, tags=["tasks"], responses=SUBMITTING)
def submit_change_(
    rt: Rt, body: ChangeSubmission, who: Operator, idempotency_key: IdempotencyKey = None
) -> ChangeSubmitted:
    """Submit a goal as a change to one of the project's repositories: one task of its
    ``repo-change:NAME`` job kind, released as the branch ``shipyard/<task>`` after it
    passed the repository's own tests and was approved."""
    result = submit_change(
        rt,
        body.repo,
        body.goal,
        base=body.base,
        tier=body.tier,
        submitted_by=who.person,
        again=body.again,
        idempotency_key=idempotency_key or "",
    )
    task = result.submitted[0]
    return ChangeSubmitted(task=task, existing=any(e.task_id == task for e in result.existing))


@router.get("/tasks/{task_id}", tags=["tasks"], responses={**READ, **BY_ID})
def get_task(rt: Rt, task_id: str, _who: Reader) -> Story:
    """A task's whole story: steps, attempts with their check reports, decisions, release."""
    return Story.model_validate(story_dict(task_story(rt, task_id)))


@router.get("/tasks/{task_id}/trace", tags=["tasks"], responses={**READ, **BY_ID})
def get_trace(rt: Rt, task_id: str, _who: Reader) -> Trace:
    """The task's spans (OpenTelemetry), in start order."""
    found = task_trace(rt, task_id)
    return Trace.model_validate(
        {
            "task_id": found.task.id,
            "spans": [
                {
                    "trace_id": s.trace_id,
                    "span_id": s.span_id,
                    "parent_id": s.parent_id,
                    "name": s.name,
                    "kind": s.kind,
                    "start_ns": s.start_ns,
                    "end_ns": s.end_ns,
                    "status": s.status,
                    "attributes": s.attributes,
                }
                for s in found.spans
            ],
        }
    )


@router.post("/tasks/{task_id}/approve", tags=["approvals"], responses={**READ, **DECIDING})
def approve_(rt: Rt, task_id: str, body: Decision, who: Approver) -> Task:
    """Approve a waiting task (never one's own submission)."""
    return Task.model_validate(
        task_dict(approve(rt, task_id, actor=who.person, reason=body.reason))
    )


@router.post("/tasks/{task_id}/reject", tags=["approvals"], responses={**READ, **DECIDING})
def reject_(rt: Rt, task_id: str, body: Decision, who: Approver) -> Task:
    """Reject a waiting task; the reason is required."""
    return Task.model_validate(task_dict(reject(rt, task_id, actor=who.person, reason=body.reason)))


@router.post("/tasks/{task_id}/provide", tags=["approvals"], responses={**READ, **DECIDING})
def provide_(rt: Rt, task_id: str, body: Supplied, who: Operator) -> Task:
    """Supply the code for a task waiting for a person's code."""
    return Task.model_validate(task_dict(provide(rt, task_id, body.files, actor=who.person)))


@router.post(
    "/tasks/{task_id}/resume", tags=["tasks"], responses={**READ, **problems(400, 403, 404, 409)}
)
def resume_(rt: Rt, task_id: str, who: Operator) -> Task:
    """Resume a task paused by a budget."""
    return Task.model_validate(task_dict(resume(rt, task_id, actor=who.person)))


@router.get("/approvals", tags=["approvals"], responses={**READ, **problems(400, 422)})
def approvals(rt: Rt, _who: Reader, limit: Limit = 50, cursor: Cursor = "") -> WaitingPage:
    """Tasks waiting for a decision, with the approvals they have and need."""
    offset = offset_of(cursor)
    waiting = approval_queue(rt)[offset : offset + limit + 1]
    items = [
        {
            **task_dict(w.task),
            "approvals": w.approvers,
            "approvals_required": w.task.approvals_required,
            "risk": w.task.risk,
            "escalated": w.escalation,
            "waiting_since": w.since,
        }
        for w in waiting
    ]
    return page_of(WaitingPage, items, offset, limit)
