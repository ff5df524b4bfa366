"""People's decisions on tasks: approve, reject, supply the code, resume; and the approval
queue with its escalations. Each decision is recorded (and audited) first, then the task's
next workflow is enqueued."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shipyard.errors import InputError, PolicyDenied, StateError
from shipyard.jobs import JobKind
from shipyard.model import DecisionKind, TaskState
from shipyard.orchestrator import Runtime, enqueue_pending, govern, notify
from shipyard.policy import Verdict
from shipyard.service._queries import find_task, list_tasks
from shipyard.store import AttemptRow, DecisionRow, TaskRow, set_task_state, transaction

__all__ = [
    "Waiting",
    "approval_queue",
    "approve",
    "decide_task",
    "escalate_overdue",
    "provide",
    "reject",
    "resume",
]


def decide_task(
    rt: Runtime,
    ref: str,
    *,
    decision: DecisionKind,
    actor: str,
    reason: str,
    principal: str = "",
) -> TaskRow:
    """Record a person's approval or rejection of a waiting task; wake it when it is decided.

    ``actor`` is the name the decision is made under, ``principal`` the authenticated person
    making it (the same person unless an ``act_for`` policy let them act for ``actor``;
    '' means ``actor``). A rejection decides at once. An approval counts towards the
    distinct approvals the policies required at the gate, one per principal: the same
    person again, under any name, is refused. The task is approved, and its workflow woken,
    when the last of them arrives. Its submitter never decides on it, under any name.
    """
    task = find_task(rt, ref)
    if not actor.strip():
        raise InputError("approver is empty", hint="pass --as NAME or set SHIPYARD_USER")
    principal = principal.strip() or actor
    if decision is DecisionKind.REJECTED and not reason.strip():
        raise InputError("a rejection needs a reason", hint="pass --reason TEXT")
    kind = rt.jobs.get(task.job_kind)
    verdict = _may_decide(rt, task, kind, actor, principal)
    now = datetime.now(UTC)
    action = "approve" if decision is DecisionKind.APPROVED else "reject"
    by = {"principal": principal} if principal != actor else {}
    try:
        with transaction(rt.sessions) as session:
            state, note = _count(rt, session, task, decision, actor, principal, reason, now)
            session.add(
                DecisionRow(
                    task_id=task.id,
                    decision=decision.value,
                    actor=actor,
                    principal=principal,
                    reason=reason,
                    decided_at=now,
                )
            )
            if state is not TaskState.WAITING_APPROVAL:
                set_task_state(
                    session, task.id, state, expect=(TaskState.WAITING_APPROVAL,), now=now
                )
            govern.record(
                session,
                actor=actor,
                action=action,
                subject=govern.job_kind(kind),
                decision=decision.value,
                reason=f"{note} ({verdict.reason()})"
                + (f"; {reason}" if reason and decision is DecisionKind.APPROVED else ""),
                task_id=task.id,
                detail=by or None,
            )
    except _AlreadyApproved as exc:
        _refused(rt, task, kind, actor, exc.refusal.message, by)
        raise exc.refusal from None
    if state is not TaskState.WAITING_APPROVAL:
        enqueue_pending(rt.project, rt.sessions, [task.id])
    return find_task(rt, task.id)


class _AlreadyApproved(Exception):
    """Raised inside the counting transaction (which it rolls back) to refuse an approval
    from a person who already gave one."""

    def __init__(self, refusal: StateError) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def _refused(
    rt: Runtime, task: TaskRow, kind: JobKind, actor: str, reason: str, by: dict[str, str]
) -> None:
    """Audit a person's refused decision on ``task`` (in a transaction of its own)."""
    with transaction(rt.sessions) as session:
        govern.record(
            session,
            actor=actor,
            action="approve",
            subject=govern.job_kind(kind),
            decision="deny",
            reason=reason,
            task_id=task.id,
            detail=by or None,
        )


def _may_decide(rt: Runtime, task: TaskRow, kind: JobKind, actor: str, principal: str) -> Verdict:
    """Policy's leave for ``actor`` to decide on ``task``; its submitter never may, under
    their own name or another's."""
    subject = govern.job_kind(kind)
    submitters = {task.submitted_by, task.submitted_principal or task.submitted_by}
    deciders = {actor, principal}
    if submitters & deciders:
        who = principal if principal in submitters else actor
        named = f" (here as {actor})" if who != actor else ""
        message = f"{who} submitted task {task.id} and cannot also approve or reject it{named}"
        if task.submitted_by != who:
            message += f" (it was submitted in {task.submitted_by}'s name)"
        _refused(
            rt,
            task,
            kind,
            actor,
            "the submitter may not decide on their own task",
            {"principal": principal} if principal != actor else {},
        )
        raise PolicyDenied(message, hint="ask another person to decide")
    _, environment, _ = govern.target_of(rt, kind)
    context = {
        "is_submitter": False,
        "risk": task.risk or kind.risk.value,
        "environment": environment,
    }
    request = govern.person_request(rt, actor, "approve", subject, context)
    return govern.require(rt, request, actor=actor, subject=subject, task_id=task.id)


def _count(
    rt: Runtime,
    session: Session,
    task: TaskRow,
    decision: DecisionKind,
    actor: str,
    principal: str,
    reason: str,
    now: datetime,
) -> tuple[TaskState, str]:
    """Where this decision leaves the task, and a note saying so (in ``session``).

    Touching the task's row first locks it: two approvers arriving together are counted in
    turn, and the second sees the first's approval. Approvals count distinct principals.
    """
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
    given = session.execute(
        select(DecisionRow.actor, DecisionRow.principal).where(
            DecisionRow.task_id == task.id, DecisionRow.decision == DecisionKind.APPROVED
        )
    ).all()
    approvers: dict[str, list[str]] = {}  # principal -> the names they approved under
    for name, by in given:
        approvers.setdefault(by or name, []).append(name)
    needed, count = max(task.approvals_required, 1), len(approvers) + 1
    if decision is DecisionKind.APPROVED and principal in approvers:
        raise _AlreadyApproved(_twice(task, principal, approvers[principal], actor, needed))
    if decision is DecisionKind.REJECTED:
        return TaskState.REJECTED, f"rejected: {reason}"
    if count >= needed:
        return TaskState.APPROVED, f"approval {count} of {needed}: approved"
    return TaskState.WAITING_APPROVAL, f"approval {count} of {needed}"


def _twice(task: TaskRow, principal: str, names: list[str], actor: str, needed: int) -> StateError:
    """The refusal of a second approval by ``principal`` (who approved as ``names``)."""
    under = ", ".join(n for n in names if n != principal)
    message = f"{principal} has already approved task {task.id}" + (
        f" (as {under})" if under else ""
    )
    if actor != principal or under:
        message += f"; an approval as {actor} is {principal}'s again and does not count twice"
    return StateError(
        message,
        hint=f"approvals must come from distinct people ({needed} needed); ask another approver",
        details={"task": task.id, "approved_by": principal},
    )


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
        done = select(DecisionRow.task_id).where(DecisionRow.decision == DecisionKind.ESCALATED)
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
                    decision=DecisionKind.ESCALATED.value,
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
                decision=DecisionKind.ESCALATED.value,
                reason=reason,
                task_id=task.id,
                detail={"to": list(settings.escalate_to)},
            )
            notify.task_event(
                rt,
                session,
                task,
                type=notify.APPROVAL_ESCALATED,
                key=f"{task.id}:approval.escalated",
                waiting_for="approval",
                reason=reason,
                escalate_to=list(settings.escalate_to),
                waiting_since=waiting_since.isoformat(),
                risk=task.risk,
                approvals_required=task.approvals_required,
            )
            escalated.append(task.id)
    return escalated


@dataclass(frozen=True, kw_only=True)
class Waiting:
    """A task at the gate: how many approvals it has, needs, and whether it was escalated."""

    task: TaskRow
    approvers: list[str]
    """The names approvals were given under, in order."""
    principals: list[str]
    """The authenticated person behind each of ``approvers`` (the same name unless they
    acted for someone else)."""
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
            select(
                DecisionRow.task_id,
                DecisionRow.decision,
                DecisionRow.actor,
                DecisionRow.reason,
                DecisionRow.principal,
            )
            .where(
                DecisionRow.task_id.in_([t.id for t in waiting]),
                DecisionRow.decision.in_(
                    (
                        DecisionKind.APPROVED,
                        DecisionKind.ESCALATED,
                        DecisionKind.POLICY_NEEDS_APPROVAL,
                    )
                ),
            )
            .order_by(DecisionRow.id)
        ).all()
        gated = dict(
            session.execute(
                select(DecisionRow.task_id, func.max(DecisionRow.decided_at))
                .where(
                    DecisionRow.task_id.in_([t.id for t in waiting]),
                    DecisionRow.decision == DecisionKind.POLICY_NEEDS_APPROVAL,
                )
                .group_by(DecisionRow.task_id)
            ).all()
        )
    approvers: dict[str, list[str]] = {}
    principals: dict[str, list[str]] = {}
    escalated: dict[str, str] = {}
    for task_id, decision, actor, reason, principal in rows:
        if decision == DecisionKind.APPROVED:
            approvers.setdefault(task_id, []).append(actor)
            principals.setdefault(task_id, []).append(principal or actor)
        elif decision == DecisionKind.ESCALATED:
            escalated[task_id] = reason
    return [
        Waiting(
            task=t,
            approvers=approvers.get(t.id, []),
            principals=principals.get(t.id, []),
            escalation=escalated.get(t.id, ""),
            since=gated.get(t.id) or t.updated_at,
        )
        for t in waiting
    ]


def provide(
    rt: Runtime, ref: str, files: dict[str, str], *, actor: str, principal: str = ""
) -> TaskRow:
    """Record a person's code for a task waiting for it, and wake the task to check it.

    ``principal`` is the authenticated person behind ``actor`` ('' means ``actor``).

    The files must be exactly the job kind's outputs; they go through the same checks,
    gate and release as a model's.
    """
    task, kind, verdict = _may_provide(rt, ref, actor)
    principal = principal.strip() or actor
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
        set_task_state(
            session,
            task.id,
            TaskState.RESUMING,
            expect=(TaskState.WAITING_INPUT,),
            refusal="not waiting for code",
            hint="only tasks in state waiting_input take code from a person",
            now=now,
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
                decision=DecisionKind.PROVIDED.value,
                actor=actor,
                principal=principal,
                reason=f"code for attempt {attempt.number}: {', '.join(sorted(files))}",
                decided_at=now,
            )
        )
        govern.record(
            session,
            actor=actor,
            action="provide",
            subject=govern.job_kind(kind),
            decision="allow",
            reason=f"attempt {attempt.number}: {', '.join(sorted(files))} ({verdict.reason()})",
            task_id=task.id,
        )
    enqueue_pending(rt.project, rt.sessions, [task.id])
    return find_task(rt, task.id)


def _may_provide(rt: Runtime, ref: str, actor: str) -> tuple[TaskRow, JobKind, Verdict]:
    """The task, its job kind, and policy's leave for ``actor`` to supply its code or resume
    it (Cedar ``provide``)."""
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
    return task, kind, verdict


def resume(rt: Runtime, ref: str, *, actor: str, principal: str = "") -> TaskRow:
    """Go on with a task paused on a budget (after the budget was raised, or a new day).
    ``principal`` is the authenticated person behind ``actor`` ('' means ``actor``)."""
    task, kind, _ = _may_provide(rt, ref, actor)
    now = datetime.now(UTC)
    with transaction(rt.sessions) as session:
        set_task_state(
            session,
            task.id,
            TaskState.RESUMING,
            expect=(TaskState.PAUSED,),
            error="",
            refusal="not paused",
            hint="only paused tasks can be resumed; see `shipyard budget` for why tasks pause",
            now=now,
        )
        session.add(
            DecisionRow(
                task_id=task.id,
                decision=DecisionKind.RESUMED.value,
                actor=actor,
                principal=principal.strip() or actor,
                reason=task.error,
                decided_at=now,
            )
        )
        govern.record(
            session,
            actor=actor,
            action="provide",
            subject=govern.job_kind(kind),
            decision=DecisionKind.RESUMED.value,
            reason=f"resumed after: {task.error.splitlines()[0] if task.error else 'a pause'}",
            task_id=task.id,
        )
    enqueue_pending(rt.project, rt.sessions, [task.id])
    return find_task(rt, task.id)


def approve(rt: Runtime, ref: str, *, actor: str, reason: str = "", principal: str = "") -> TaskRow:
    return decide_task(
        rt, ref, decision=DecisionKind.APPROVED, actor=actor, reason=reason, principal=principal
    )


def reject(rt: Runtime, ref: str, *, actor: str, reason: str, principal: str = "") -> TaskRow:
    return decide_task(
        rt, ref, decision=DecisionKind.REJECTED, actor=actor, reason=reason, principal=principal
    )
