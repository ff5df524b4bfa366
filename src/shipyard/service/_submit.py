"""Submitting work: inputs validated at the door, every row recorded as a task, the valid
ones enqueued on their domain's queue. No worker needs to be running: one picks the work up
when it starts.

Submitting twice makes nothing twice (see ``_idempotency``): a valid row whose business key
already has a task returns that task unless ``again`` asks for a new generation, and a
request under a client's idempotency key gets its first answer again.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from shipyard.errors import InputError
from shipyard.jobs import BatchRow, JobKind, inputs_hash, kept_of_refused, validate_inputs
from shipyard.model import TaskState
from shipyard.orchestrator import Runtime, enqueue_pending, govern
from shipyard.policy import Verdict
from shipyard.service import _idempotency as idem
from shipyard.store import TaskRow, lock_rows, transaction

__all__ = ["Existing", "Rejected", "SubmitResult", "new_id", "submit"]


@dataclass(frozen=True, kw_only=True)
class Rejected:
    """A row refused at the door, with the reason that names its row and field."""

    where: str
    message: str
    task_id: str


@dataclass(frozen=True, kw_only=True)
class Existing:
    """A valid row whose business key already had a task: that task stands for it."""

    where: str
    task_id: str
    state: str
    """The task's state when the row was submitted."""
    batch_id: str
    """The batch that made the task (this one's own, for a row repeated within it)."""


@dataclass(frozen=True, kw_only=True)
class SubmitResult:
    submitted: list[str] = field(default_factory=list)
    """Ids of the valid rows' tasks, each once, in row order: enqueued now, or (named in
    ``existing``) made before."""
    rejected: list[Rejected] = field(default_factory=list)
    """Rows that did not fit the schema (recorded as ``invalid`` tasks, never run)."""
    batch_id: str = ""
    existing: list[Existing] = field(default_factory=list)
    """Rows whose business key already had a task (nothing new was made for them)."""
    business_keys: dict[str, str] = field(default_factory=dict)
    """Each submitted task's business key."""
    replayed: bool = False
    """True when this is the recorded answer to an earlier request under the same
    idempotency key (nothing was recorded this time)."""

    @property
    def new(self) -> list[str]:
        """Ids of the tasks this submission made."""
        found = {e.task_id for e in self.existing if e.batch_id != self.batch_id}
        return [t for t in self.submitted if t not in found]

    def as_data(self) -> dict[str, Any]:
        """The result as JSON-able data (what an idempotency key's record keeps)."""
        return {
            "batch_id": self.batch_id,
            "submitted": list(self.submitted),
            "rejected": [r.__dict__ for r in self.rejected],
            "existing": [e.__dict__ for e in self.existing],
            "business_keys": dict(self.business_keys),
        }

    @classmethod
    def from_data(cls, data: dict[str, Any], *, replayed: bool = False) -> SubmitResult:
        return cls(
            batch_id=str(data["batch_id"]),
            submitted=[str(t) for t in data["submitted"]],
            rejected=[Rejected(**r) for r in data["rejected"]],
            existing=[Existing(**e) for e in data.get("existing", [])],
            business_keys=dict(data.get("business_keys", {})),
            replayed=replayed,
        )


def new_id(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"


def submit(
    rt: Runtime,
    kind: JobKind,
    rows: Iterable[BatchRow],
    *,
    submitted_by: str,
    again: bool = False,
    idempotency_key: str = "",
    principal: str = "",
) -> SubmitResult:
    """Validate each row; record every row as a task; enqueue the valid ones.

    A bad row never stops the others: it is recorded as an ``invalid`` task with its reason.
    A valid row whose business key already has a task is answered with that task (listed in
    ``existing``), unless ``again`` makes a new generation. Under an ``idempotency_key``
    (scoped to ``submitted_by``) the answer is recorded with the tasks, and a later request
    with the same key and rows gets it again; with other rows it is a StateError.
    ``principal`` is the authenticated person behind ``submitted_by`` ('' means the same);
    they never approve the task either. A job kind that would release at once to a
    production target no policy lets take it so is refused here, before anything is recorded.
    """
    if not submitted_by.strip():
        raise InputError("submitter is empty", hint="pass --as NAME or set SHIPYARD_USER")
    govern.require_release_plans(rt.project, rt.policies, [kind])
    rows = list(rows)
    subject = govern.job_kind(kind)
    request = govern.person_request(rt, submitted_by, "submit", subject, {"rows": len(rows)})
    door = _Door(
        kind=kind,
        submitted_by=submitted_by,
        principal=principal.strip() or submitted_by,
        subject=subject,
        verdict=govern.require(rt, request, actor=submitted_by, subject=subject),
        again=again,
        result=SubmitResult(batch_id=new_id("b")),
    )
    asked = idem.request_hash(kind.name, rows, again=again) if idempotency_key else ""
    locks = [f"submit {kind.name}"]
    if idempotency_key:
        locks.append(idem.lock_name(submitted_by, idempotency_key))
    with transaction(rt.sessions) as session:
        lock_rows(session, *locks)  # two submissions of one business key or key: one at a time
        answered = (
            idem.recall(session, submitted_by, idempotency_key, asked) if idempotency_key else None
        )
        if answered is None:
            for row in rows:
                door.record(session, row)
            if idempotency_key:
                idem.remember(session, submitted_by, idempotency_key, asked, door.result.as_data())
    result = door.result if answered is None else SubmitResult.from_data(answered, replayed=True)
    if result.submitted:  # attaches to a workflow that exists; enqueues one a crash lost
        enqueue_pending(rt.project, rt.sessions, result.submitted)
    return result


@dataclass(kw_only=True)
class _Door:
    """One submission's rows on their way into the records."""

    kind: JobKind
    submitted_by: str
    principal: str
    subject: govern.Subject
    verdict: Verdict
    again: bool
    result: SubmitResult
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def record(self, session: Session, row: BatchRow) -> None:
        """Record one row: an invalid task, the task its business key has, or a new one."""
        try:
            inputs = validate_inputs(self.kind, row.data, where=row.where)
        except InputError as exc:
            task_id = new_id("t")
            inputs = kept_of_refused(row.data)
            self._add(session, row, task_id, inputs, TaskState.INVALID, error=exc.message)
            self.result.rejected.append(
                Rejected(where=row.where, message=exc.message, task_id=task_id)
            )
            self._audit(session, row, task_id, "invalid", exc.message)
            return
        key, digest = str(inputs.get(self.kind.input_key, "")), inputs_hash(inputs)
        found = None if self.again else idem.latest_task(session, self.kind.name, key, digest)
        if found is not None:
            self.result.existing.append(
                Existing(
                    where=row.where,
                    task_id=found.task_id,
                    state=found.state,
                    batch_id=found.batch_id,
                )
            )
            self._submitted(found.task_id, found.business_key)
            reason = f"already submitted as {found.task_id} ({found.business_key})"
            self._audit(session, row, found.task_id, "existing", reason)
            return
        generation = (  # nothing found without ``again``: the first generation
            idem.next_generation(session, self.kind.name, key, digest) if self.again else 1
        )
        business_key = idem.business_key(self.kind.name, key, digest, generation)
        task_id = new_id("t")
        self._add(
            session, row, task_id, inputs, TaskState.QUEUED, key=business_key, generation=generation
        )
        self._submitted(task_id, business_key)
        self._audit(session, row, task_id, "allow", self.verdict.reason(), business_key)

    def _submitted(self, task_id: str, business_key: str) -> None:
        if task_id not in self.result.business_keys:
            self.result.submitted.append(task_id)
            self.result.business_keys[task_id] = business_key

    def _add(
        self,
        session: Session,
        row: BatchRow,
        task_id: str,
        inputs: dict[str, Any],
        state: TaskState,
        *,
        error: str = "",
        key: str = "",
        generation: int = 1,
    ) -> None:
        session.add(
            TaskRow(
                id=task_id,
                domain=self.kind.domain,
                job_kind=self.kind.name,
                input_key=str(inputs.get(self.kind.input_key, "")),
                inputs=inputs,
                inputs_hash=inputs_hash(inputs),
                source=row.where,
                batch_id=self.result.batch_id,
                state=state.value,
                submitted_by=self.submitted_by,
                submitted_principal=self.principal,
                submitted_at=self.now,
                updated_at=self.now,
                finished_at=self.now if state.terminal else None,
                error=error,
                business_key=key or task_id,  # no natural key: the task is its own
                generation=generation,
            )
        )

    def _audit(
        self,
        session: Session,
        row: BatchRow,
        task_id: str,
        decision: str,
        reason: str,
        key: str = "",
    ) -> None:
        detail: dict[str, Any] = {"batch": self.result.batch_id, "source": row.where}
        if self.principal != self.submitted_by:
            detail["principal"] = self.principal
        if key:
            detail["business_key"] = key
        govern.record(
            session,
            actor=self.submitted_by,
            action="submit",
            subject=self.subject,
            decision=decision,
            reason=reason,
            task_id=task_id,
            detail=detail,
        )
