"""Service functions: what the CLI (and later the API and MCP) do, in one place.

Submitting validates at the door, records the task and enqueues its workflow on the domain's
queue; approving records the person's decision and wakes the waiting workflow. None of these
needs a worker to be running: the workflow picks the work up when one is.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dbos import DBOS, DBOSClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shipyard.config import Project
from shipyard.errors import InputError, NotFound, PolicyDenied, StateError, StoreError
from shipyard.jobs import BatchRow, JobKind, inputs_hash, validate_inputs
from shipyard.model import TaskState
from shipyard.orchestrator import _govern as govern
from shipyard.orchestrator import _ledger
from shipyard.orchestrator._ledger import BudgetReport
from shipyard.orchestrator._runtime import Runtime
from shipyard.orchestrator._workflow import (
    DECISION_WORKFLOW,
    RESUME_WORKFLOW,
    WORKFLOW_NAME,
    WORKFLOW_VERSION,
    decision_workflow_id,
    resume_workflow_id,
)
from shipyard.release import StaticSite
from shipyard.store import (
    ArtifactRow,
    AttemptRow,
    DecisionRow,
    MemoryRow,
    ProvenanceRow,
    ReleaseRow,
    StepRow,
    TaskRow,
    transaction,
    use_wal,
)

__all__ = [
    "Rejected",
    "SubmitResult",
    "TaskStory",
    "approval_queue",
    "approve",
    "budget_report",
    "dbos_config",
    "decide_task",
    "enqueue_pending",
    "escalate_overdue",
    "find_task",
    "list_tasks",
    "provide",
    "queue_name",
    "queue_settings",
    "reject",
    "resume",
    "rollback",
    "submit",
    "system_database",
    "task_story",
]


def queue_name(domain: str) -> str:
    return f"shipyard-{domain}"


def dbos_config(project: Project, *, executor_id: str | None = None) -> dict[str, Any]:
    """DBOS settings for this project: its system database, Shipyard's version as app version."""
    config: dict[str, Any] = {
        "name": "shipyard",
        "application_version": WORKFLOW_VERSION,
        "log_level": "WARNING",
        "notification_listener_polling_interval_sec": 0.2,
    }
    if executor_id:
        config["executor_id"] = executor_id
    config["system_database_url"] = system_database(project)
    return config


def system_database(project: Project) -> str:
    """DBOS's database URL; on SQLite its connections are set to WAL (see ``use_wal``)."""
    if project.is_sqlite:
        use_wal(project.state_dir / "workflows.sqlite")
    return project.system_database_url


def _client(project: Project) -> DBOSClient:
    DBOS.migrate(system_database(project))
    return DBOSClient(system_database_url=system_database(project))


def queue_settings(project: Project, domain: str) -> dict[str, Any]:
    """A domain queue's limits: tasks at once (all workers, per worker) and per minute."""
    settings = project.settings.domains[domain]
    found: dict[str, Any] = {
        "global_concurrency": settings.concurrency,
        "worker_concurrency": settings.worker_concurrency,
        "polling_interval_sec": 0.2,
    }
    if settings.tasks_per_minute is not None:
        found["limiter"] = {"limit": settings.tasks_per_minute, "period": 60.0}
    return found


def _register_queues(client: DBOSClient, project: Project) -> None:
    for domain in project.settings.domains:
        client.register_queue(queue_name(domain), **queue_settings(project, domain))


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


def _new_id(prefix: str) -> str:
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
    batch_id = _new_id("b")
    result = SubmitResult(batch_id=batch_id)
    now = datetime.now(UTC)
    valid: list[str] = []
    with transaction(rt.sessions) as session:
        for row in rows:
            task_id = _new_id("t")
            try:
                inputs = validate_inputs(kind, row.data, where=row.where)
                state, error = TaskState.QUEUED, ""
                valid.append(task_id)
            except InputError as exc:
                inputs = {k: v for k, v in row.data.items() if not k.startswith("__")}
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
        enqueue_pending(rt, valid)
    result.submitted.extend(valid)
    return result


def _enqueue(project: Project, domain: str, runs: Sequence[tuple[str, str, str]]) -> None:
    """Enqueue (workflow name, workflow id, task id) runs on the domain's queue."""
    try:
        client = _client(project)
    except Exception as exc:  # DBOS or the database driver: translate at the boundary
        raise _not_enqueued(exc) from exc
    try:
        _register_queues(client, project)
        for workflow, workflow_id, task_id in runs:
            # Workflow ids derive from the task id: enqueueing twice attaches to the same run.
            client.enqueue(
                {
                    "workflow_name": workflow,
                    "queue_name": queue_name(domain),
                    "workflow_id": workflow_id,
                    "app_version": WORKFLOW_VERSION,
                },
                task_id,
            )
    except Exception as exc:
        raise _not_enqueued(exc) from exc
    finally:
        client.destroy()


def _not_enqueued(exc: Exception) -> StoreError:
    return StoreError(
        f"the work is recorded but could not be enqueued: {type(exc).__name__}: {exc}",
        hint="nothing is lost: the next `shipyard worker` to start enqueues it",
    )


def enqueue_pending(rt: Runtime, task_ids: Sequence[str] = ()) -> int:
    """Enqueue the workflow each pending task needs (all pending tasks when none is named).

    A queued task needs its task workflow; a decided, unfinished one its decision workflow;
    a resuming one (a person supplied its code, or resumed it from a pause) its next resume
    workflow. Every such change is recorded first and enqueued second, so if a process dies
    in between, a worker calls this at launch and the work goes on all the same. Workflow
    ids derive from the records: enqueueing one that exists attaches to it, never
    duplicates it.
    """
    decided = (TaskState.APPROVED.value, TaskState.REJECTED.value)
    resuming = TaskState.RESUMING.value
    with rt.sessions() as session:
        query = select(TaskRow.id, TaskRow.domain, TaskRow.state).where(
            TaskRow.finished_at.is_(None),
            TaskRow.state.in_((TaskState.QUEUED.value, resuming, *decided)),
        )
        if task_ids:
            query = query.where(TaskRow.id.in_(task_ids))
        pending = session.execute(query).all()
        resumptions = dict(
            session.execute(
                select(DecisionRow.task_id, func.count())
                .where(
                    DecisionRow.task_id.in_([t for t, _, state in pending if state == resuming]),
                    DecisionRow.decision.in_(RESUMPTIONS),
                )
                .group_by(DecisionRow.task_id)
            ).all()
        )
    by_domain: dict[str, list[tuple[str, str, str]]] = {}
    for task_id, domain, state in pending:
        if state in decided:
            run = (DECISION_WORKFLOW, decision_workflow_id(task_id), task_id)
        elif state == resuming:
            workflow_id = resume_workflow_id(task_id, int(resumptions.get(task_id, 0)))
            run = (RESUME_WORKFLOW, workflow_id, task_id)
        else:
            run = (WORKFLOW_NAME, task_id, task_id)
        by_domain.setdefault(domain, []).append(run)
    for domain, runs in by_domain.items():
        _enqueue(rt.project, domain, runs)
    return len(pending)


def budget_report(rt: Runtime, *, days: int = 7) -> BudgetReport:
    """Spend against every budget today, and roll-ups per job kind, domain and day."""
    with rt.sessions() as session:
        return _ledger.budget_report(session, rt.project.settings, days=days)


def find_task(rt: Runtime, ref: str) -> TaskRow:
    """A task by id or unique id prefix."""
    with rt.sessions() as session:
        row = session.get(TaskRow, ref)
        if row is not None:
            return row
        matches = session.scalars(select(TaskRow).where(TaskRow.id.startswith(ref)).limit(2)).all()
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(f"no task {ref!r}", hint="see `shipyard list` for task ids")
    raise InputError(f"task id {ref!r} is ambiguous", hint="give more of the id")


def decide_task(rt: Runtime, ref: str, *, decision: str, actor: str, reason: str) -> TaskRow:
    """Record a person's approval or rejection of a waiting task; wake it when it is decided.

    A rejection decides at once. An approval counts towards the distinct approvals the
    policies required at the gate; the task is approved, and its workflow woken, when the
    last of them arrives. The submitter never approves their own task.
    """
    task = find_task(rt, ref)
    if not actor.strip():
        raise InputError("approver is empty", hint="pass --as NAME or set SHIPYARD_USER")
    if decision == "rejected" and not reason.strip():
        raise InputError("a rejection needs a reason", hint="pass --reason TEXT")
    kind = rt.jobs.get(task.job_kind)
    subject = govern.job_kind(kind)
    if actor == task.submitted_by:
        with transaction(rt.sessions) as session:
            govern.record(
                session,
                actor=actor,
                action="approve",
                subject=subject,
                decision="deny",
                reason="the submitter may not decide on their own task",
                task_id=task.id,
            )
        raise PolicyDenied(
            f"{actor} submitted task {task.id} and cannot also approve or reject it",
            hint="ask another person to decide",
        )
    _, environment, _ = govern.target_of(rt, kind)
    context = {
        "is_submitter": False,
        "risk": task.risk or kind.risk.value,
        "environment": environment,
    }
    request = govern.person_request(rt, actor, "approve", subject, context)
    verdict = govern.require(rt, request, actor=actor, subject=subject, task_id=task.id)
    now = datetime.now(UTC)
    with transaction(rt.sessions) as session:
        # Touching the row first locks it: two approvers arriving together are counted in turn.
        touched = session.execute(
            update(TaskRow)
            .where(TaskRow.id == task.id, TaskRow.state == TaskState.WAITING_APPROVAL.value)
            .values(updated_at=now)
        )
        if touched.rowcount != 1:  # type: ignore[attr-defined]
            raise StateError(
                f"task {task.id} is {find_task(rt, task.id).state}, not waiting for approval",
                hint="only tasks in state waiting_approval can be approved or rejected",
            )
        approvers = set(
            session.scalars(
                select(DecisionRow.actor).where(
                    DecisionRow.task_id == task.id, DecisionRow.decision == "approved"
                )
            ).all()
        )
        if decision == "approved" and actor in approvers:
            raise StateError(
                f"{actor} has already approved task {task.id}",
                hint="approvals must come from distinct people; ask another approver",
            )
        session.add(
            DecisionRow(
                task_id=task.id, decision=decision, actor=actor, reason=reason, decided_at=now
            )
        )
        needed = max(task.approvals_required, 1)
        count = len(approvers) + 1
        if decision == "rejected":
            state, note = TaskState.REJECTED, f"rejected: {reason}"
        elif count >= needed:
            state, note = TaskState.APPROVED, f"approval {count} of {needed}: approved"
        else:
            state, note = TaskState.WAITING_APPROVAL, f"approval {count} of {needed}"
        if state is not TaskState.WAITING_APPROVAL:
            session.execute(update(TaskRow).where(TaskRow.id == task.id).values(state=state.value))
        govern.record(
            session,
            actor=actor,
            action="approve" if decision == "approved" else "reject",
            subject=subject,
            decision=decision,
            reason=f"{note} ({verdict.reason()})"
            + (f"; {reason}" if reason and decision == "approved" else ""),
            task_id=task.id,
        )
    if state is not TaskState.WAITING_APPROVAL:
        enqueue_pending(rt, [task.id])
    return find_task(rt, task.id)


def escalate_overdue(rt: Runtime, *, now: datetime | None = None) -> list[str]:
    """Escalate approvals waiting longer than ``policy.escalate_after_minutes`` (once each).

    Each escalation is recorded as a decision (shown by ``shipyard approvals``) and audited;
    the task keeps waiting. Returns the ids escalated now.
    """
    settings = rt.project.settings.policy
    if not settings.escalate_after_minutes:
        return []
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(minutes=settings.escalate_after_minutes)
    to = ", ".join(settings.escalate_to) or "the project's approvers"
    escalated: list[str] = []
    with transaction(rt.sessions) as session:
        done = select(DecisionRow.task_id).where(DecisionRow.decision == "escalated")
        overdue = session.scalars(
            select(TaskRow).where(
                TaskRow.state == TaskState.WAITING_APPROVAL.value,
                TaskRow.id.not_in(done),
            )
        ).all()
        for task in overdue:
            waiting_since = (
                session.scalar(
                    select(func.max(DecisionRow.decided_at)).where(
                        DecisionRow.task_id == task.id, DecisionRow.decision.startswith("policy:")
                    )
                )
                or task.updated_at
            )
            if waiting_since > cutoff:
                continue
            minutes = (now - waiting_since).total_seconds() / 60
            limit = f"{settings.escalate_after_minutes:g}"
            reason = f"waiting {minutes:.0f} min for approval (limit {limit}): escalated to {to}"
            session.add(
                DecisionRow(
                    task_id=task.id,
                    decision="escalated",
                    actor="policy",
                    reason=reason,
                    decided_at=now,
                )
            )
            govern.record(
                session,
                actor="policy",
                action="escalate",
                subject=f"job kind {task.job_kind}",
                decision="escalated",
                reason=reason,
                task_id=task.id,
                detail={"to": list(settings.escalate_to)},
            )
            escalated.append(task.id)
    return escalated


@dataclass(frozen=True, kw_only=True)
class Waiting:
    """A task at the gate: how many approvals it has, needs, and whether it was escalated."""

    task: TaskRow
    approvers: list[str]
    escalation: str
    """The escalation's reason, '' when it was not escalated."""
    since: datetime
    """When the gate stopped it (what escalation measures from)."""


def approval_queue(rt: Runtime) -> list[Waiting]:
    """Tasks waiting for approval (after escalating the overdue ones), oldest first."""
    escalate_overdue(rt)
    waiting = list_tasks(rt, states=[TaskState.WAITING_APPROVAL.value])
    with rt.sessions() as session:
        rows = session.execute(
            select(DecisionRow.task_id, DecisionRow.decision, DecisionRow.actor, DecisionRow.reason)
            .where(
                DecisionRow.task_id.in_([t.id for t in waiting]),
                DecisionRow.decision.in_(("approved", "escalated", "policy:needs_approval")),
            )
            .order_by(DecisionRow.id)
        ).all()
        gated = dict(
            session.execute(
                select(DecisionRow.task_id, func.max(DecisionRow.decided_at))
                .where(
                    DecisionRow.task_id.in_([t.id for t in waiting]),
                    DecisionRow.decision == "policy:needs_approval",
                )
                .group_by(DecisionRow.task_id)
            ).all()
        )
    approvers: dict[str, list[str]] = {}
    escalated: dict[str, str] = {}
    for task_id, decision, actor, reason in rows:
        if decision == "approved":
            approvers.setdefault(task_id, []).append(actor)
        elif decision == "escalated":
            escalated[task_id] = reason
    return [
        Waiting(
            task=t,
            approvers=approvers.get(t.id, []),
            escalation=escalated.get(t.id, ""),
            since=gated.get(t.id) or t.updated_at,
        )
        for t in waiting
    ]


RESUMPTIONS = ("provided", "resumed")
"""Decisions that start a resume workflow (each one numbers the next)."""


def provide(rt: Runtime, ref: str, files: dict[str, str], *, actor: str) -> TaskRow:
    """Record a person's code for a task waiting for it, and wake the task to check it.

    The files must be exactly the job kind's outputs; they go through the same checks,
    gate and release as a model's.
    """
    task = find_task(rt, ref)
    if not actor.strip():
        raise InputError("the person is not named", hint="pass --as NAME or set SHIPYARD_USER")
    kind = rt.jobs.get(task.job_kind)
    subject = govern.job_kind(kind)
    context = {"is_submitter": actor == task.submitted_by}
    verdict = govern.require(
        rt,
        govern.person_request(rt, actor, "provide", subject, context),
        actor=actor,
        subject=subject,
        task_id=task.id,
    )
    missing, extra = sorted(set(kind.outputs) - set(files)), sorted(set(files) - set(kind.outputs))
    if missing or extra:
        raise InputError(
            f"task {task.id} ({kind.name}) needs exactly the files {sorted(kind.outputs)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; not outputs of the job kind: {extra}" if extra else ""),
            hint="pass one --file NAME=PATH per output (or --file PATH when the base name "
            "is the output's name)",
        )
    now = datetime.now(UTC)
    with transaction(rt.sessions) as session:
        moved = session.execute(
            update(TaskRow)
            .where(TaskRow.id == task.id, TaskRow.state == TaskState.WAITING_INPUT.value)
            .values(state=TaskState.RESUMING.value, updated_at=now)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise StateError(
                f"task {task.id} is {task.state}, not waiting for code",
                hint="only tasks in state waiting_input take code from a person",
            )
        attempt = session.scalar(
            select(AttemptRow)
            .where(AttemptRow.task_id == task.id)
            .order_by(AttemptRow.number.desc())
            .limit(1)
        )
        if attempt is None or attempt.tier != "human" or attempt.files:
            raise StateError(
                f"task {task.id} has no attempt waiting for a person's code",
                hint="see `shipyard show` for its attempts",
            )
        attempt.files, attempt.model, attempt.generated_at = dict(files), actor, now
        session.add(
            DecisionRow(
                task_id=task.id,
                decision="provided",
                actor=actor,
                reason=f"code for attempt {attempt.number}: {', '.join(sorted(files))}",
                decided_at=now,
            )
        )
        govern.record(
            session,
            actor=actor,
            action="provide",
            subject=subject,
            decision="allow",
            reason=f"attempt {attempt.number}: {', '.join(sorted(files))} ({verdict.reason()})",
            task_id=task.id,
        )
    enqueue_pending(rt, [task.id])
    return find_task(rt, task.id)


def resume(rt: Runtime, ref: str, *, actor: str) -> TaskRow:
    """Go on with a task paused on a budget (after the budget was raised, or a new day)."""
    task = find_task(rt, ref)
    if not actor.strip():
        raise InputError("the person is not named", hint="pass --as NAME or set SHIPYARD_USER")
    kind = rt.jobs.get(task.job_kind)
    govern.require(
        rt,
        govern.person_request(
            rt,
            actor,
            "provide",
            govern.job_kind(kind),
            {"is_submitter": actor == task.submitted_by},
        ),
        actor=actor,
        subject=govern.job_kind(kind),
        task_id=task.id,
    )
    now = datetime.now(UTC)
    with transaction(rt.sessions) as session:
        moved = session.execute(
            update(TaskRow)
            .where(TaskRow.id == task.id, TaskRow.state == TaskState.PAUSED.value)
            .values(state=TaskState.RESUMING.value, updated_at=now, error="")
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise StateError(
                f"task {task.id} is {task.state}, not paused",
                hint="only paused tasks can be resumed; see `shipyard budget` for why tasks pause",
            )
        session.add(
            DecisionRow(
                task_id=task.id, decision="resumed", actor=actor, reason=task.error, decided_at=now
            )
        )
        govern.record(
            session,
            actor=actor,
            action="provide",
            subject=govern.job_kind(kind),
            decision="resumed",
            reason=f"resumed after: {task.error.splitlines()[0] if task.error else 'a pause'}",
            task_id=task.id,
        )
    enqueue_pending(rt, [task.id])
    return find_task(rt, task.id)


def approve(rt: Runtime, ref: str, *, actor: str, reason: str = "") -> TaskRow:
    return decide_task(rt, ref, decision="approved", actor=actor, reason=reason)


def reject(rt: Runtime, ref: str, *, actor: str, reason: str) -> TaskRow:
    return decide_task(rt, ref, decision="rejected", actor=actor, reason=reason)


def list_tasks(
    rt: Runtime,
    *,
    states: Sequence[str] = (),
    job_kind: str = "",
    batch_id: str = "",
    limit: int = 200,
) -> list[TaskRow]:
    with rt.sessions() as session:
        query = select(TaskRow).order_by(TaskRow.submitted_at, TaskRow.source)
        if states:
            query = query.where(TaskRow.state.in_(states))
        if job_kind:
            query = query.where(TaskRow.job_kind == job_kind)
        if batch_id:
            query = query.where(TaskRow.batch_id == batch_id)
        return list(session.scalars(query.limit(limit)).all())


def count_by_state(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as session:
        rows = session.execute(select(TaskRow.state, func.count()).group_by(TaskRow.state)).all()
    return {state: count for state, count in rows}


@dataclass(frozen=True, kw_only=True)
class TaskStory:
    """Everything recorded about one task, for ``shipyard show``."""

    task: TaskRow
    steps: list[StepRow]
    attempts: list[AttemptRow]
    decisions: list[DecisionRow]
    provenance: ProvenanceRow | None
    release: ReleaseRow | None
    memories: dict[str, MemoryRow] = field(default_factory=dict)
    """The recalled memory items named by the attempts, by their ``mem-N`` id."""


def task_story(rt: Runtime, ref: str) -> TaskStory:
    task = find_task(rt, ref)
    with rt.sessions() as session:
        return TaskStory(
            task=task,
            steps=list(
                session.scalars(
                    select(StepRow).where(StepRow.task_id == task.id).order_by(StepRow.id)
                ).all()
            ),
            attempts=list(
                session.scalars(
                    select(AttemptRow)
                    .where(AttemptRow.task_id == task.id)
                    .order_by(AttemptRow.number)
                ).all()
            ),
            decisions=list(
                session.scalars(
                    select(DecisionRow)
                    .where(DecisionRow.task_id == task.id)
                    .order_by(DecisionRow.id)
                ).all()
            ),
            provenance=session.get(ProvenanceRow, task.id),
            release=session.scalar(select(ReleaseRow).where(ReleaseRow.task_id == task.id)),
            memories=_recalled(session, task.id),
        )


def _recalled(session: Session, task_id: str) -> dict[str, MemoryRow]:
    named = {
        str(ident)
        for recalled in session.scalars(
            select(AttemptRow.recalled).where(AttemptRow.task_id == task_id)
        ).all()
        for ident in recalled or []
    }
    ids = [int(n.removeprefix("mem-")) for n in named if n.removeprefix("mem-").isdigit()]
    rows = session.scalars(select(MemoryRow).where(MemoryRow.id.in_(ids))).all() if ids else []
    return {f"mem-{row.id}": row for row in rows}


def list_artifacts(rt: Runtime, *, job_kind: str = "") -> list[tuple[ArtifactRow, list[str]]]:
    """Artifact versions (newest first) with the targets each is live on."""
    with rt.sessions() as session:
        query = select(ArtifactRow).order_by(ArtifactRow.created_at.desc())
        if job_kind:
            query = query.where(ArtifactRow.job_kind == job_kind)
        artifacts = session.scalars(query).all()
        live = session.execute(
            select(ReleaseRow.artifact_id, ReleaseRow.target).where(ReleaseRow.state == "live")
        ).all()
    where: dict[str, list[str]] = {}
    for artifact_id, target in live:
        where.setdefault(artifact_id, []).append(target)
    return [(a, sorted(set(where.get(a.id, [])))) for a in artifacts]


def rollback(rt: Runtime, target_name: str, *, actor: str) -> dict[str, Any]:
    """Switch ``target_name`` back to its previous version; mark what left as rolled back."""
    target = rt.target(target_name)
    if not isinstance(target, StaticSite):
        raise StateError(
            f"target {target_name!r} is a {target.kind} target: it has no site version to go "
            "back to",
            hint="roll back one release instead: `shipyard release rollback TASK`",
        )
    subject = govern.target(rt, target_name)
    verdict = govern.require(
        rt, govern.person_request(rt, actor, "rollback", subject, {}), actor=actor, subject=subject
    )
    with transaction(rt.sessions) as session:  # the decision is on the record before the act
        govern.record(
            session, actor=actor, action="rollback", subject=subject, decision="allow",
            reason=verdict.reason(),
        )  # fmt: skip
    result = target.rollback()
    now = datetime.now(UTC)
    with transaction(rt.sessions) as session:
        govern.record(
            session,
            actor=actor,
            action="rollback",
            subject=subject,
            decision="done",
            reason=f"version {result.from_version} -> {result.to_version}",
            detail={"tasks": list(result.removed_keys)},
        )
        restored = list(target.manifest(result.to_version)["releases"])
        session.execute(  # what the old version holds is live again
            update(ReleaseRow)
            .where(
                ReleaseRow.target == target_name,
                ReleaseRow.state == "replaced",
                ReleaseRow.task_id.in_(restored),
            )
            .values(state="live")
        )
        for task_id in result.removed_keys:
            session.execute(
                update(ReleaseRow)
                .where(ReleaseRow.task_id == task_id)
                .values(state="rolled_back", rolled_back_at=now)
            )
            session.execute(
                update(TaskRow)
                .where(TaskRow.id == task_id)
                .values(state=TaskState.ROLLED_BACK.value, updated_at=now)
            )
            session.add(
                DecisionRow(
                    task_id=task_id,
                    decision="rolled_back",
                    actor=actor,
                    reason=f"{target_name}: version {result.from_version} -> {result.to_version}",
                    decided_at=now,
                )
            )
    return {
        "target": target_name,
        "from_version": result.from_version,
        "to_version": result.to_version,
        "rolled_back_tasks": list(result.removed_keys),
    }
