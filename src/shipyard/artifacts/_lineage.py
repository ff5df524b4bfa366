"""Lineage: from an artifact back to its tasks, attempts, prompts, models, inputs, memories,
checks and approvals, and forward to the releases that carry it; diffs between versions,
recall queries ("everything made with prompt P / model M"), OpenLineage events, and the
retention sweep.

Every function reads through the session it is handed (and the artifact store where files
are needed); the service layer opens the session.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shipyard import __version__
from shipyard.artifacts._diff import file_diff
from shipyard.artifacts._store import ArtifactBackend
from shipyard.errors import InputError, NotFound
from shipyard.model import CheckReport, ReleaseState, TaskState
from shipyard.store import (
    ArtifactRow,
    AttemptRow,
    DecisionRow,
    MemoryRow,
    ProvenanceRow,
    ReleaseRow,
    TaskRow,
    has_prefix,
)

__all__ = [
    "GcReport",
    "collect_garbage",
    "diff_against_previous",
    "diff_artifacts",
    "find_artifact",
    "lineage",
    "openlineage_events",
    "previous_version",
    "produced_with",
]


def find_artifact(session: Session, ref: str) -> str:
    """An artifact id from an id, a unique prefix (with or without ``sha256:``), or a task."""
    ref = ref.strip()
    task = session.get(TaskRow, ref)
    if task is None and ref.startswith("t-"):
        tasks = session.scalars(select(TaskRow).where(has_prefix(TaskRow.id, ref)).limit(2)).all()
        task = tasks[0] if len(tasks) == 1 else None
    if task is not None:
        if not task.artifact_id:
            raise NotFound(
                f"task {task.id} has no artifact (it is {task.state})",
                hint="only tasks whose output passed its checks have one",
            )
        return task.artifact_id
    prefix = ref if ref.startswith("sha256:") else f"sha256:{ref}"
    found = session.scalars(
        select(ArtifactRow.id).where(has_prefix(ArtifactRow.id, prefix)).limit(2)
    ).all()
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFound(f"no artifact or task {ref!r}", hint="see `shipyard artifacts`")
    raise InputError(f"artifact id {ref!r} is ambiguous", hint="give more of the id")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _attempt(a: AttemptRow) -> dict[str, Any]:
    report = CheckReport.from_dict(a.report) if a.report else None
    return {
        "number": a.number,
        "tier": a.tier,
        "provider": a.provider,
        "model": a.model,
        "prompt_hash": a.prompt_hash,
        "tokens": [a.input_tokens, a.output_tokens],
        "cost_usd": str(a.cost_usd),
        "passed": a.passed,
        "findings_fed_back": len(a.feedback or []),
        "route": a.route.splitlines(),
        "checks": [
            {"check": r.check, "passed": r.passed, "findings": len(r.findings)}
            for r in (report.results if report else ())
        ],
    }


def _task_lineage(session: Session, task: TaskRow) -> dict[str, Any]:
    attempts = session.scalars(
        select(AttemptRow).where(AttemptRow.task_id == task.id).order_by(AttemptRow.number)
    ).all()
    provenance = session.get(ProvenanceRow, task.id)
    record = provenance.record if provenance is not None else {}
    recalled_ids = [
        int(str(i).removeprefix("mem-"))
        for i in record.get("recalled", [])
        if str(i).removeprefix("mem-").isdigit()
    ]
    memories = (
        session.scalars(select(MemoryRow).where(MemoryRow.id.in_(recalled_ids))).all()
        if recalled_ids
        else []
    )
    decisions = session.scalars(
        select(DecisionRow).where(DecisionRow.task_id == task.id).order_by(DecisionRow.id)
    ).all()
    releases = session.scalars(select(ReleaseRow).where(ReleaseRow.task_id == task.id)).all()
    return {
        "task": task.id,
        "state": task.state,
        "job_kind": task.job_kind,
        "domain": task.domain,
        "input_key": task.input_key,
        "inputs": task.inputs,
        "inputs_hash": task.inputs_hash,
        "submitted_by": task.submitted_by,
        "submitted_at": _iso(task.submitted_at),
        "template_hash": record.get("template_hash", ""),
        "prompt_hash": record.get("prompt_hash", ""),
        "provider": record.get("provider", ""),
        "model": record.get("model", ""),
        "signed": bool(provenance is not None and provenance.envelope),
        "attempts": [_attempt(a) for a in attempts],
        "memories": [{"id": m.id, "kind": m.kind, "text": m.text} for m in memories],
        "decisions": [
            {"decision": d.decision, "actor": d.actor, "reason": d.reason, "at": _iso(d.decided_at)}
            for d in decisions
        ],
        "approvals": record.get("approvals", []),
        "releases": [
            {
                "target": r.target,
                "path": r.path,
                "version": r.version,
                "state": r.state,
                "released_at": _iso(r.released_at),
                "rolled_back_at": _iso(r.rolled_back_at),
            }
            for r in releases
        ],
    }


def lineage(session: Session, ref: str) -> dict[str, Any]:
    """The artifact's whole history: every task that produced it, back to its inputs, and
    forward to the releases that carried it."""
    artifact_id = find_artifact(session, ref)
    artifact = session.get(ArtifactRow, artifact_id)
    if artifact is None:  # find_artifact found it: gone since is a race
        raise NotFound(f"artifact {artifact_id} vanished")
    producers = session.scalars(
        select(TaskRow)
        .join(ProvenanceRow, ProvenanceRow.task_id == TaskRow.id)
        .where(ProvenanceRow.artifact_id == artifact_id)
        .order_by(TaskRow.submitted_at)
    ).all()
    tasks = [_task_lineage(session, t) for t in producers]
    live = sorted({r["target"] for t in tasks for r in t["releases"] if r["state"] == "live"})
    return {
        "artifact": {
            "id": artifact.id,
            "job_kind": artifact.job_kind,
            "input_key": artifact.input_key,
            "files": artifact.files,
            "size": artifact.size,
            "created_at": _iso(artifact.created_at),
        },
        "tasks": tasks,
        "live_on": live,
    }


def produced_with(
    session: Session, *, prompt: str = "", model: str = "", template: str = ""
) -> list[dict[str, Any]]:
    """Tasks whose artifact was made with this prompt version, model or template version.

    Any attempt counts for prompts and models (the repairs shaped the result too); a prefix
    of a hash is enough.
    """
    if not (prompt or model or template):
        raise InputError("name a prompt hash, a model or a template hash", hint="see --help")
    rows = _attempts_made_with(session, prompt=prompt, model=model)
    if template:
        keep = _tasks_with_template(session, template)
        rows = [(t, a) for t, a in rows if t.id in keep]
    releases = {
        r.task_id: r
        for r in session.scalars(
            select(ReleaseRow).where(ReleaseRow.task_id.in_([t.id for t, _ in rows]))
        ).all()
    }
    seen: dict[str, dict[str, Any]] = {}
    for task, attempt in rows:
        entry = seen.setdefault(task.id, _produced_entry(task, releases.get(task.id)))
        entry["attempts"].append(attempt.number)
    return list(seen.values())


def _attempts_made_with(
    session: Session, *, prompt: str, model: str
) -> list[tuple[TaskRow, AttemptRow]]:
    """(task, attempt) of tasks with an artifact, oldest first, narrowed to the attempts made
    with the prompt (a hash prefix, with or without ``sha256:``) and model given."""
    query = (
        select(TaskRow, AttemptRow)
        .join(AttemptRow, AttemptRow.task_id == TaskRow.id)
        .where(TaskRow.artifact_id != "")
    )
    if prompt:
        query = query.where(
            or_(
                has_prefix(AttemptRow.prompt_hash, prompt),
                has_prefix(AttemptRow.prompt_hash, f"sha256:{prompt}"),
            )
        )
    if model:
        query = query.where(AttemptRow.model == model)
    return [(t, a) for t, a in session.execute(query.order_by(TaskRow.submitted_at)).all()]


def _tasks_with_template(session: Session, template: str) -> set[str]:
    """Tasks whose provenance records a template hash starting with ``template``."""
    wanted = template.removeprefix("sha256:")
    return {
        p.task_id
        for p in session.scalars(select(ProvenanceRow)).all()
        if str(p.record.get("template_hash", "")).removeprefix("sha256:").startswith(wanted)
    }


def _produced_entry(task: TaskRow, release: ReleaseRow | None) -> dict[str, Any]:
    """One row of :func:`produced_with`, before its attempts are added."""
    return {
        "task": task.id,
        "artifact": task.artifact_id,
        "job_kind": task.job_kind,
        "input_key": task.input_key,
        "state": task.state,
        "release": (
            f"{release.state} on {release.target} at {release.path}" if release is not None else ""
        ),
        "attempts": [],
    }


def previous_version(session: Session, task: TaskRow) -> ArtifactRow | None:
    """What a task's artifact changes: the version of the same job kind and input key live
    on a target now, else the latest other version, else None (it is new)."""
    base = (
        select(ArtifactRow)
        .where(
            ArtifactRow.job_kind == task.job_kind,
            ArtifactRow.input_key == task.input_key,
            ArtifactRow.id != task.artifact_id,
        )
        .order_by(ArtifactRow.created_at.desc())
        .limit(1)
    )
    live = session.scalar(
        base.join(ReleaseRow, ReleaseRow.artifact_id == ArtifactRow.id).where(
            ReleaseRow.state == ReleaseState.LIVE
        )
    )
    return live or session.scalar(base)


def diff_against_previous(
    session: Session, store: ArtifactBackend, task: TaskRow
) -> tuple[str | None, list[str]]:
    """(the version compared with, unified diff lines) for a task's artifact."""
    if not task.artifact_id:
        return None, []
    previous = previous_version(session, task)
    before = store.read(store.get(previous.id)) if previous is not None else {}
    after = store.read(store.get(task.artifact_id))
    lines = file_diff(before, after, old="live", new="candidate")
    return (previous.id if previous is not None else None), lines


def diff_artifacts(
    session: Session, store: ArtifactBackend, a: str, b: str, *, force: bool = False
) -> list[str]:
    """Unified diff lines from version ``a`` to ``b`` (same job kind and input key)."""
    first, second = find_artifact(session, a), find_artifact(session, b)
    row_a, row_b = session.get(ArtifactRow, first), session.get(ArtifactRow, second)
    if row_a is None or row_b is None:  # find_artifact found them: gone since is a race
        raise NotFound(f"artifact {first if row_a is None else second} vanished")
    if not force and (row_a.job_kind, row_a.input_key) != (row_b.job_kind, row_b.input_key):
        raise InputError(
            f"{first[:19]} is {row_a.job_kind} for {row_a.input_key!r}, {second[:19]} is "
            f"{row_b.job_kind} for {row_b.input_key!r}: not versions of the same thing",
            hint="diff two versions of one job kind and input key, or pass --force",
        )
    files_a = store.read(store.get(first))
    files_b = store.read(store.get(second))
    return file_diff(files_a, files_b, old=first[:19], new=second[:19])


# -- OpenLineage ----------------------------------------------------------------------------

OPENLINEAGE_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
PRODUCER = f"urn:shipyard:{__version__}"
_FACET_SCHEMA = "urn:shipyard:facets:v1"
_ENDED = {
    TaskState.PUBLISHED.value: "COMPLETE",
    TaskState.DONE.value: "COMPLETE",
    TaskState.ROLLED_BACK.value: "COMPLETE",
    TaskState.FAILED.value: "FAIL",
    TaskState.ERROR.value: "FAIL",
    TaskState.COMPENSATED.value: "FAIL",
    TaskState.REJECTED.value: "ABORT",
    TaskState.DENIED.value: "ABORT",
}


def _facet(**fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": _FACET_SCHEMA, **fields}


def openlineage_events(session: Session, ref: str, *, project: str) -> list[dict[str, Any]]:
    """OpenLineage run events (START, then how it ended) for every task behind an artifact."""
    story = lineage(session, ref)
    namespace = f"shipyard://{project}"
    events: list[dict[str, Any]] = []
    for task in story["tasks"]:
        start = _start_event(task, namespace)
        events.append(start)
        ended = _ENDED.get(task["state"])
        if ended:
            outputs = _artifact_datasets(story["artifact"], namespace)
            events.append(
                start
                | {
                    "eventType": ended,
                    "eventTime": _end_time(task),
                    "outputs": outputs if ended == "COMPLETE" else [],
                }
            )
    return events


def _start_event(task: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The START event of one task of a lineage: its job, its inputs and how it generated."""
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"shipyard:task:{task['task']}"))
    job = {
        "namespace": namespace,
        "name": f"{task['domain']}.{task['job_kind']}",
        "facets": {},
    }
    inputs = [
        {
            "namespace": namespace,
            "name": f"inputs/{task['job_kind']}/{task['input_key']}",
            "facets": {
                "shipyard_inputs": _facet(inputsHash=task["inputs_hash"]),
            },
        }
    ]
    run_facets = {
        "shipyard_generation": _facet(
            attempts=len(task["attempts"]),
            tier=task["attempts"][-1]["tier"] if task["attempts"] else "",
            provider=task["provider"],
            model=task["model"],
            promptHash=task["prompt_hash"],
            templateHash=task["template_hash"],
            costUsd=str(sum(Decimal(a["cost_usd"]) for a in task["attempts"])),
        ),
        "shipyard_approvals": _facet(approvals=task["approvals"]),
    }
    return {
        "eventType": "START",
        "eventTime": task["submitted_at"],
        "producer": PRODUCER,
        "schemaURL": OPENLINEAGE_SCHEMA,
        "run": {"runId": run_id, "facets": run_facets},
        "job": job,
        "inputs": inputs,
        "outputs": [],
    }


def _artifact_datasets(artifact: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """The artifact as the output dataset of a run that completed."""
    return [
        {
            "namespace": namespace,
            "name": f"artifacts/{artifact['id']}",
            "facets": {
                "shipyard_artifact": _facet(files=sorted(artifact["files"]), size=artifact["size"]),
            },
        }
    ]


def _end_time(task: dict[str, Any]) -> str | None:
    """When a task ended: its last decision or release, else when it was submitted."""
    finished = [d["at"] for d in task["decisions"]] + [r["released_at"] for r in task["releases"]]
    ended: str | None = max(t for t in finished if t) if any(finished) else task["submitted_at"]
    return ended


# -- retention ------------------------------------------------------------------------------


@dataclass(kw_only=True)
class GcReport:
    kept: dict[str, str] = field(default_factory=dict)
    """Artifact id -> why it stays."""
    expired: list[str] = field(default_factory=list)
    """Artifacts collected (or, on a dry run, that would be)."""
    freed_bytes: int = 0
    applied: bool = False


def collect_garbage(
    session: Session,
    store: ArtifactBackend,
    *,
    keep_days: int,
    apply: bool = False,
    now: datetime | None = None,
) -> GcReport:
    """Expire unreleased artifacts older than ``keep_days`` (a dry run by default).

    Never collected: an artifact any release references (live, rolled back or withdrawn), one
    a task still waits on, or one younger than the retention period. Collected artifacts keep
    their records (lineage stays whole); their files leave the store. Applied in the caller's
    transaction: the rows are marked in ``session``.
    """
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=keep_days)
    report = GcReport(applied=apply)
    released = set(session.scalars(select(ReleaseRow.artifact_id)).all())
    terminal = [s.value for s in TaskState if s.terminal]
    pending = set(
        session.scalars(
            select(TaskRow.artifact_id).where(
                TaskRow.artifact_id != "", TaskRow.state.not_in(terminal)
            )
        ).all()
    )
    every = session.scalars(select(ArtifactRow)).all()
    for artifact in every:
        if artifact.collected_at is not None:
            continue
        if artifact.id in released:
            report.kept[artifact.id] = "referenced by a release"
        elif artifact.id in pending:
            report.kept[artifact.id] = "a task still waits on it"
        elif artifact.created_at > cutoff:
            report.kept[artifact.id] = f"younger than {keep_days} days"
        else:
            report.expired.append(artifact.id)
            report.freed_bytes += artifact.size
    if apply and report.expired:
        expired = set(report.expired)
        keep = [a.id for a in every if a.id not in expired]  # collected ones may be back
        report.freed_bytes = store.remove(report.expired, keep=keep)
        for artifact in every:
            if artifact.id in expired:
                artifact.collected_at = now
    return report
