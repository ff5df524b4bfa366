"""A task's provenance: the record made when its artifact is registered, signed as an in-toto
statement (and signed again as approvals arrive), and verified against the files and the
records. Reads what it needs through the session it is handed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.artifacts._attest import SigningKey, sign_statement
from shipyard.artifacts._attest import verify_envelope as verify_signature
from shipyard.artifacts._provenance import Attempt, build_statement, check_statement
from shipyard.artifacts._store import ArtifactBackend, StoredArtifact
from shipyard.errors import NotFound, ShipyardError, StoreError
from shipyard.store import ArtifactRow, AttemptRow, ProvenanceRow, TaskRow

__all__ = ["ArtifactCheck", "provenance_record", "sign_provenance", "verify_artifact"]


def _attempt(a: AttemptRow) -> Attempt:
    return Attempt(
        number=a.number,
        tier=a.tier,
        provider=a.provider,
        model=a.model,
        prompt_hash=a.prompt_hash,
        report=a.report,
        passed=a.passed,
    )


def provenance_record(
    task: TaskRow,
    attempt: AttemptRow,
    artifact: StoredArtifact,
    *,
    template_hash: str,
    at: datetime,
) -> dict[str, Any]:
    """What is recorded of how ``artifact`` was made by ``task``'s passing ``attempt``.

    Approvals start empty and are added (and the statement signed again) as they arrive.
    """
    return {
        "artifact": artifact.id,
        "files": artifact.manifest,
        "task": task.id,
        "domain": task.domain,
        "job_kind": task.job_kind,
        "input_key": task.input_key,
        "inputs_hash": task.inputs_hash,
        "template_hash": template_hash,
        "prompt_hash": attempt.prompt_hash,
        "tier": attempt.tier,
        "provider": attempt.provider,
        "model": attempt.model,
        "attempts": attempt.number,
        "checks": attempt.report,
        "recalled": attempt.recalled,
        "submitted_by": task.submitted_by,
        "submitted_at": task.submitted_at.isoformat(),
        "generated_at": attempt.generated_at.isoformat(),
        "registered_at": at.isoformat(),
        "approvals": [],
    } | ({"change": _change_provenance(task, attempt)} if attempt.change else {})


def _change_provenance(task: TaskRow, attempt: AttemptRow) -> dict[str, Any]:
    """A repository change's origin: the repository, the base commit, the tree it produces,
    and the files of the repository its generator was sent (the context, with its digest)."""
    change = dict(attempt.change or {})
    summary, context = dict(change.get("summary") or {}), dict(change.get("context") or {})
    return {
        "repo": str(task.inputs.get("repo", task.input_key)),
        "base": str(summary.get("base", task.inputs.get("base", ""))),
        "tree": str(summary.get("tree", "")),
        "context_digest": str(context.get("digest", "")),
        "context_files": [str(f["path"]) for f in context.get("files", [])],
    }


def sign_provenance(
    session: Session,
    store: ArtifactBackend,
    key: SigningKey,
    task_id: str,
    *,
    record_inputs: bool,
) -> None:
    """(Re-)sign the task's provenance record as an in-toto statement, in ``session``.

    ``record_inputs`` puts the task's inputs themselves in the statement (else their digest).
    """
    row = session.get(ProvenanceRow, task_id)
    task = session.get(TaskRow, task_id)
    if row is None or task is None:
        return
    artifact = store.get(row.artifact_id)
    attempts = session.scalars(
        select(AttemptRow)
        .where(AttemptRow.task_id == task_id, AttemptRow.number <= int(row.record["attempts"]))
        .order_by(AttemptRow.number)
    ).all()
    statement = build_statement(
        artifact_id=row.artifact_id,
        manifest=artifact.manifest,
        record=row.record,
        attempts=[_attempt(a) for a in attempts],
        inputs=dict(task.inputs) if record_inputs else None,
        approvals=list(row.record.get("approvals", [])),
    )
    row.envelope = sign_statement(statement, key)
    row.signed_at = datetime.now(UTC)


@dataclass(kw_only=True)
class ArtifactCheck:
    """What ``shipyard artifacts verify`` found for one artifact version."""

    artifact_id: str
    checked: list[str] = field(default_factory=list)
    """What was checked and held."""
    problems: list[str] = field(default_factory=list)
    """What did not hold, each precise enough to act on."""

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_artifact(
    session: Session, store: ArtifactBackend, key: SigningKey, artifact_id: str
) -> ArtifactCheck:
    """Check the files on disk, every signed statement about the artifact, and its reports.

    ``key`` may be the public half of the project's key pair (nothing is signed here).
    """
    result = ArtifactCheck(artifact_id=artifact_id)
    artifact = session.get(ArtifactRow, artifact_id)
    if artifact is None:
        raise NotFound(f"no artifact {artifact_id}", hint="see `shipyard artifacts`")
    if artifact.collected_at is not None:
        when = artifact.collected_at
        result.problems.append(
            f"its files were collected by `shipyard artifacts gc` at {when.isoformat()}"
        )
        return result
    rows = session.scalars(
        select(ProvenanceRow).where(ProvenanceRow.artifact_id == artifact_id)
    ).all()
    try:
        stored = store.get(artifact_id)
        store.read(stored)  # every file against its digest, the manifest against the id
        result.checked.append(f"{len(stored.manifest)} file(s) match their sha256 digests")
    except ShipyardError as exc:
        result.problems.append(exc.message)
        return result
    if not rows:
        result.problems.append("no task recorded provenance for this artifact")
    for row in rows:
        _verify_provenance(session, key, row, stored.manifest, result)
    return result


def _verify_provenance(
    session: Session,
    key: SigningKey,
    row: ProvenanceRow,
    manifest: dict[str, dict[str, Any]],
    result: ArtifactCheck,
) -> None:
    """One task's provenance: its signature, then the signed statement against the stored
    files, the check reports and the records. Adds what held and what did not to ``result``."""
    where = f"task {row.task_id}"
    if row.envelope is None:
        result.problems.append(f"{where}: the provenance was never signed")
        return
    try:
        statement = verify_signature(row.envelope, key)
    except StoreError as exc:
        result.problems.append(f"{where}: {exc.message}")
        return
    result.checked.append(f"{where}: signature by {key.keyid[:23]}… holds")
    attempts = session.scalars(
        select(AttemptRow).where(AttemptRow.task_id == row.task_id).order_by(AttemptRow.number)
    ).all()
    problems = check_statement(
        statement,
        artifact_id=result.artifact_id,
        manifest=manifest,
        reports={a.number: a.report for a in attempts},
        record=row.record,
        attempts=[_attempt(a) for a in attempts],
    )
    result.problems += [f"{where}: {p}" for p in problems]
    if not problems:
        result.checked.append(f"{where}: statement matches the files and the check reports")
