"""People steering releases: roll a site back, pause / resume / promote / roll back a rollout,
and the releases' read model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shipyard.config import Project
from shipyard.errors import InputError, NotFound, StateError
from shipyard.jobs import JobRegistry
from shipyard.model import DecisionKind, ReleaseState, TaskState
from shipyard.orchestrator import COMMANDS, Runtime, govern, notify, withdraw_live
from shipyard.policy import Policies
from shipyard.release import StaticSite
from shipyard.store import (
    DecisionRow,
    ReleaseRow,
    TaskRow,
    has_prefix,
    set_task_state,
    transaction,
)

__all__ = ["releases", "require_release_plans", "rollback", "steer"]


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
                ReleaseRow.state == ReleaseState.REPLACED,
                ReleaseRow.task_id.in_(restored),
            )
            .values(state=ReleaseState.LIVE.value)
        )
        for task_id in result.removed_keys:
            session.execute(
                update(ReleaseRow)
                .where(ReleaseRow.task_id == task_id)
                .values(state=ReleaseState.ROLLED_BACK.value, rolled_back_at=now)
            )
            set_task_state(session, task_id, TaskState.ROLLED_BACK, now=now)
            reason = f"{target_name}: version {result.from_version} -> {result.to_version}"
            session.add(
                DecisionRow(
                    task_id=task_id,
                    decision=DecisionKind.ROLLED_BACK.value,
                    actor=actor,
                    reason=reason,
                    decided_at=now,
                )
            )
            _rolled_back(
                rt,
                session,
                task_id,
                reason=f"site rolled back by {actor}: {reason}",
                actor=actor,
                version=result.to_version,
            )
    return {
        "target": target_name,
        "from_version": result.from_version,
        "to_version": result.to_version,
        "rolled_back_tasks": list(result.removed_keys),
    }


def steer(rt: Runtime, task_id: str, command: str, *, actor: str) -> dict[str, Any]:
    """A person's pause / resume / promote / rollback of a release.

    A rollout in progress takes the command at its next look (within one interval); a
    release already live is rolled back here and now (withdrawn from its target).
    """
    if command not in COMMANDS:
        raise StateError(f"unknown command {command!r}", hint=f"one of: {', '.join(COMMANDS)}")
    with rt.sessions() as session:
        rows = session.scalars(
            select(ReleaseRow).where(has_prefix(ReleaseRow.task_id, task_id)).limit(2)
        ).all()
        if not rows:
            raise NotFound(f"no release for task {task_id}", hint="`shipyard releases` lists them")
        if len(rows) > 1:
            raise InputError(
                f"{task_id!r} names more than one release ({rows[0].task_id}, {rows[1].task_id})",
                hint="give more of the task id",
            )
        full_id, target_name, state = rows[0].task_id, rows[0].target, rows[0].state
    subject = govern.target(rt, target_name)
    verdict = govern.require(
        rt,
        govern.person_request(rt, actor, "steer", subject, {"command": command}),
        actor=actor,
        subject=subject,
        task_id=full_id,
    )
    fits = {
        "pause": (ReleaseState.CANARY,),
        "resume": (ReleaseState.PAUSED,),
        "promote": (ReleaseState.CANARY, ReleaseState.PAUSED),
        "rollback": (ReleaseState.CANARY, ReleaseState.PAUSED, ReleaseState.LIVE),
    }[command]
    if state not in fits:
        raise StateError(
            f"release of task {full_id} is {state}: it cannot be {command}d",
            hint=f"{command} applies to a release that is {' or '.join(fits)}",
        )
    with transaction(rt.sessions) as session:
        govern.record(
            session, actor=actor, action=command, subject=subject, decision="allow",
            reason=verdict.reason(), task_id=full_id,
        )  # fmt: skip
        if state == ReleaseState.LIVE:  # done: undo it on the target now
            session.execute(
                update(ReleaseRow).where(ReleaseRow.task_id == full_id).values(command="")
            )
    if state == ReleaseState.LIVE:
        return _withdraw(rt, full_id, target_name, actor=actor)
    with transaction(rt.sessions) as session:
        session.execute(
            update(ReleaseRow)
            .where(ReleaseRow.task_id == full_id)
            .values(command=command, command_by=actor)
        )
    return {"task": full_id, "command": command, "state": state, "queued": True}


def _withdraw(rt: Runtime, task_id: str, target_name: str, *, actor: str) -> dict[str, Any]:
    """Take a live release back now (``orchestrator.withdraw_live``: traffic first, then the
    records, the audit entry and the notification), as a monitor's rollback does."""
    done = withdraw_live(rt, task_id, actor=actor, reason=f"rolled back by {actor}")
    if done is None:
        raise StateError(
            f"release of task {task_id} is not live on {target_name} any more; nothing changed",
            hint="a later release or a site rollback replaced it: `shipyard releases` shows "
            "what is live",
        )
    return {
        "task": task_id,
        "command": "rollback",
        "state": ReleaseState.ROLLED_BACK.value,
        "version": done.version,
    }


def _rolled_back(
    rt: Runtime, session: Session, task_id: str, *, reason: str, actor: str, version: str
) -> None:
    """The release.rolled_back notification of a person's rollback (in ``session``)."""
    task = session.get(TaskRow, task_id)
    release = session.scalar(select(ReleaseRow).where(ReleaseRow.task_id == task_id))
    if task is None:
        return
    notify.rolled_back(
        rt,
        session,
        task,
        reason=reason,
        by=actor,
        path=release.path if release is not None else "",
        version=release.version if release is not None else "",
        live_version=version,
    )


def releases(
    rt: Runtime, *, task: str = "", target: str = "", state: str = "", limit: int = 50
) -> list[dict[str, Any]]:
    """Releases, newest first, with their stage, latest numbers and time to recover."""
    query = select(ReleaseRow, TaskRow.job_kind).join(TaskRow, TaskRow.id == ReleaseRow.task_id)
    if task:
        query = query.where(has_prefix(ReleaseRow.task_id, task))
    if target:
        query = query.where(ReleaseRow.target == target)
    if state:
        query = query.where(ReleaseRow.state == state)
    with rt.sessions() as session:
        rows = session.execute(query.order_by(ReleaseRow.id.desc()).limit(limit)).all()
    found = []
    for row, job_kind in rows:
        stages = list(row.plan.get("stages", [])) if row.plan else []
        recovered = (
            (row.restored_at - row.detected_at).total_seconds()
            if row.restored_at and row.detected_at
            else None
        )
        found.append(
            {
                "task": row.task_id,
                "job_kind": job_kind,
                "target": row.target,
                "path": row.path,
                "state": row.state,
                "stages": stages,
                "stage": row.stage,
                "weight": row.weight,
                "version": row.version,
                "reason": row.reason,
                "verdicts": list(row.verdicts or []),
                "released_at": row.released_at,
                "finished_at": row.finished_at,
                "detected_at": row.detected_at,
                "restored_at": row.restored_at,
                "time_to_detect_s": (  # for a rollout's rollback, not a live release's
                    round((row.detected_at - row.stage_started_at).total_seconds(), 2)
                    if row.detected_at
                    and row.stage_started_at
                    and row.finished_at
                    and row.finished_at >= row.detected_at
                    else None
                ),
                "time_to_recover_ms": round(recovered * 1000, 1) if recovered is not None else None,
            }
        )
    return found


def require_release_plans(project: Project) -> None:
    """Refuse (a ConfigError naming each target and the fix) a project whose job kinds would
    release at once to a production target that no policy lets take a release that way. A
    worker checks this when it starts; ``shipyard policy check`` with it (reading the files
    only, no database)."""
    policies = Policies.load(project.policy_files)
    govern.require_release_plans(project, policies, JobRegistry.load(project))
