"""The release phase's durable steps: read and record a person's decision, put the artifact
live through the journalled ``publish`` tool, run the job kind's effects (and undo them in
reverse when one fails), then remember the outcome and close the task.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shipyard.errors import ShipyardError
from shipyard.generate import render
from shipyard.jobs import is_repo_change
from shipyard.memory import outcome_memories, remember
from shipyard.model import DecisionKind, ReleaseState, TaskState
from shipyard.orchestrator import _effects as effects
from shipyard.orchestrator import _govern as govern
from shipyard.orchestrator._names import Decided, Decision, EffectDone, Published
from shipyard.orchestrator._runtime import Runtime, current_runtime
from shipyard.orchestrator._stage import _now, _task, stage, step
from shipyard.orchestrator._verify import sign
from shipyard.store import (
    AttemptRow,
    DecisionRow,
    ProvenanceRow,
    ReleaseRow,
    TaskRow,
    set_task_state,
    transaction,
)

__all__ = [
    "compensate_step",
    "effect_step",
    "finish_step",
    "read_decision_step",
    "record_decision_step",
    "release_step",
]


@step("shipyard.read_decision")
def read_decision_step(task_id: str) -> Decision | None:
    """The people's decision on this task, if one is recorded (the database is the truth).

    A rejection decides; otherwise the approvals, all of them, in order.
    """
    rt = current_runtime()
    with rt.sessions() as session:
        rows = session.scalars(
            select(DecisionRow)
            .where(
                DecisionRow.task_id == task_id,
                DecisionRow.decision.in_((DecisionKind.APPROVED, DecisionKind.REJECTED)),
            )
            .order_by(DecisionRow.id)
        ).all()
        if not rows:
            return None
        task = _task(session, task_id)
        decided: list[Decided] = [
            {
                "decision": r.decision,
                "actor": r.actor,
                "reason": r.reason,
                "at": r.decided_at.isoformat(),
            }
            for r in rows
        ]
    rejected = [d for d in decided if d["decision"] == DecisionKind.REJECTED]
    return {
        "job_kind": task.job_kind,
        "decision": (DecisionKind.REJECTED if rejected else DecisionKind.APPROVED).value,
        "reason": rejected[0]["reason"] if rejected else "",
        "decisions": rejected[:1] or decided,
    }


@step("shipyard.record_decision")
def record_decision_step(task_id: str, decision: Decision) -> None:
    rt = current_runtime()
    with stage(rt, task_id, "approval") as record, transaction(rt.sessions) as session:
        provenance = session.get(ProvenanceRow, task_id)
        if provenance is not None:
            known = list(provenance.record["approvals"])
            added = [d for d in decision["decisions"] if d not in known]
            provenance.record = provenance.record | {"approvals": known + added}
            if added:
                sign(rt, session, task_id)  # the signed statement names them too
        record["summary"] = "; ".join(
            f"{d['decision']} by {d['actor']}" + (f": {d['reason']}" if d["reason"] else "")
            for d in decision["decisions"]
        )


@step("shipyard.release")
def release_step(task_id: str) -> Published:
    """Put the artifact live through the ``publish`` tool (journalled: a re-run replays it)."""
    rt = current_runtime()
    with stage(rt, task_id, "release") as record:
        with rt.sessions() as session:
            task = _task(session, task_id)
            kind = rt.jobs.get(task.job_kind)
            inputs, artifact_id = dict(task.inputs), task.artifact_id
        if kind.release is None:
            raise ShipyardError(f"job kind {kind.name!r} has no release target")
        with rt.sessions() as session:
            under_way = session.scalar(
                select(ReleaseRow.state).where(ReleaseRow.task_id == task_id)
            )
        if under_way is None or not ReleaseState(under_way).baking:  # not a canary's promotion
            allowed = govern.require_release_plan(rt, kind, task_id=task_id)
            if allowed is not None:
                record["immediate"] = allowed.reason()
        args = {
            "target": kind.release.target,
            "path": render(kind.release.path, inputs, name="path", where=str(kind.folder)),
            # A repository change's commit says what it does: the goal.
            "title": str(
                inputs["goal"] if is_repo_change(kind) else inputs.get("name", task.input_key)
            ),
            "artifact": artifact_id,
            "release_key": task_id,
        }
        outcome = effects.invoke(rt, kind, task_id, 0, "publish", args)
        if not outcome.ok:
            raise ShipyardError(f"release failed: {outcome.error}")
        result = outcome.result
        with transaction(rt.sessions) as session:
            if not result["already_live"]:  # what this replaces at its path is live no more
                session.execute(
                    update(ReleaseRow)
                    .where(
                        ReleaseRow.target == result["target"],
                        ReleaseRow.path == result["url_path"],
                        ReleaseRow.state == ReleaseState.LIVE,
                        ReleaseRow.task_id != task_id,
                    )
                    .values(state=ReleaseState.REPLACED.value)
                )
            row = session.scalar(select(ReleaseRow).where(ReleaseRow.task_id == task_id))
            if row is not None and ReleaseState(row.state).baking:  # a canary promoted
                row.state, row.version, row.weight = (
                    ReleaseState.LIVE.value,
                    result["version"][:40],
                    100.0,
                )
                row.finished_at, row.command, row.reason = _now(), "", ""
            if row is None:
                session.add(
                    ReleaseRow(
                        task_id=task_id,
                        artifact_id=artifact_id,
                        target=result["target"],
                        path=result["url_path"],
                        version=result["version"][:40],
                        state=ReleaseState.LIVE.value,
                        released_at=_now(),
                        weight=100.0,
                        finished_at=_now(),
                    )
                )
        record["summary"] = (
            f"live on {result['target']} at {result['url_path']} (version {result['version']})"
        )
        record["already_live"] = bool(result["already_live"]) or outcome.replayed
    return result


@step("shipyard.effect")
def effect_step(task_id: str, position: int, release: Published) -> EffectDone:
    """The job kind's effect at ``position`` (1-based), its options rendered with the inputs."""
    rt = current_runtime()
    with stage(rt, task_id, f"effect {position}") as record:
        with rt.sessions() as session:
            task = _task(session, task_id)
            kind = rt.jobs.get(task.job_kind)
            inputs = dict(task.inputs)
        spec = kind.effects[position - 1]
        context = inputs | {"release": release, "task_id": task_id}
        args = _render_options(spec.options, context, where=f"{kind.folder} effect {position}")
        outcome = effects.invoke(rt, kind, task_id, position, spec.tool, args)
        record["summary"] = (
            f"{spec.tool}: " + ("replayed from the journal" if outcome.replayed else "done")
            if outcome.ok
            else f"{spec.tool} failed: {outcome.error}"
        )
    return {"ok": outcome.ok, "error": outcome.error}


def _render_options(value: Any, context: dict[str, Any], *, where: str) -> Any:
    if isinstance(value, str):
        return render(value, context, name="option", where=where)
    if isinstance(value, dict):
        return {k: _render_options(v, context, where=where) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_options(v, context, where=where) for v in value]
    return value


@step("shipyard.compensate")
def compensate_step(task_id: str, reason: str) -> list[str]:
    """Undo the task's completed effects, newest first (a re-run skips what is undone)."""
    rt = current_runtime()
    with stage(rt, task_id, "compensate") as record:
        with rt.sessions() as session:
            kind = rt.jobs.get(_task(session, task_id).job_kind)
        notes = effects.compensate(rt, kind, task_id, reason)
        record["summary"] = "; ".join(notes) or "nothing to undo"
    return notes


@step("shipyard.finish")
def finish_step(task_id: str, state: str, outcome: str, error: str = "") -> None:
    """Remember the outcome for next time and close the task."""
    rt = current_runtime()
    with stage(rt, task_id, "remember") as record, transaction(rt.sessions) as session:
        task = _task(session, task_id)
        started, job_kind, domain = task.submitted_at, task.job_kind, task.domain
        if task.finished_at is not None and task.state == state:
            # A run cut short after it closed the task: remembered and audited already.
            record["summary"] = f"task {state} (closed before)"
        else:
            for kind, text in _memories(rt, session, task, outcome, error):
                remember(
                    session,
                    rt.memory,
                    namespace=task.domain,
                    kind=kind,
                    job_kind=task.job_kind,
                    input_key=task.input_key,
                    task_id=task_id,
                    text=text,
                    meta={"artifact": task.artifact_id, "state": state},
                    tags=(task.job_kind, kind),
                )
            set_task_state(session, task_id, TaskState(state), error=error or None)
            govern.record(
                session,
                actor=f"agent {task.domain}",
                action="close",
                subject=f"job kind {task.job_kind}",
                decision=state,
                reason=error or outcome,
                task_id=task_id,
            )
            record["summary"] = f"remembered as {outcome}; task {state}"
    # The root span closes the trace once the task is closed (a re-run stores it again with
    # the same ids; `shipyard trace` shows each span id once).
    rt.tracing.task_root(task_id, job_kind=job_kind, domain=domain, state=state, started=started)


def _memories(
    rt: Runtime, session: Session, task: TaskRow, outcome: str, error: str
) -> list[tuple[str, str]]:
    """(kind, text) to remember of a finished task (see ``memory.outcome_memories``)."""
    attempts = session.scalars(
        select(AttemptRow).where(AttemptRow.task_id == task.id).order_by(AttemptRow.number)
    ).all()
    files = (
        rt.artifacts.read(rt.artifacts.get(task.artifact_id))
        if outcome in ("published", "approved") and task.artifact_id
        else {}
    )
    return outcome_memories(task, attempts, outcome, error, files)
