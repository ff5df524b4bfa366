"""Submitting twice: the business key that makes a row the same task, and the record of a
client's ``Idempotency-Key`` that makes a request the same answer.

A valid row's *business key* is what its task is about for the world outside:
``KIND:INPUT_KEY:DIGEST``: the job kind, the row's ``input_key`` value (only letters, digits
and ``._-`` kept, at most 40 of them; it is there for people to read) and the first 16 hex
digits of the inputs' sha256 (``jobs.inputs_hash``, over the validated inputs). A row whose
business key already has a task returns that task; ``again`` makes the next *generation*,
whose key ends in ``~N``. Effects' idempotency keys derive from the business key
(``BUSINESSKEY:POSITION:TOOL``), so the same business key is the same call to the service
on the far side.

An ``Idempotency-Key`` is the client's name for one request, scoped to the person of its
API token. The answer is recorded in the transaction that records the request's tasks,
and kept as long as they are (forever): the same key and body get that answer again; the
same key with another body is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shipyard.errors import StateError
from shipyard.jobs import BatchRow
from shipyard.model import TaskState
from shipyard.store import IdempotencyKeyRow, TaskRow

__all__ = [
    "Found",
    "business_key",
    "latest_task",
    "lock_name",
    "next_generation",
    "recall",
    "remember",
    "request_hash",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

SUBJECT_CHARS = 40
"""How much of the ``input_key`` value a business key keeps (for people; the digest decides)."""
DIGEST_CHARS = 16
"""Hex digits of the inputs' sha256 in a business key (64 bits)."""


def business_key(kind: str, subject: str, digest: str, generation: int = 1) -> str:
    """``KIND:SUBJECT:DIGEST``, with ``~GENERATION`` from the second generation on.

    Only header-safe characters: the key travels to outside services (``Idempotency-Key``).
    """
    readable = _UNSAFE.sub("-", subject)[:SUBJECT_CHARS]
    base = f"{kind}:{readable}:{digest[:DIGEST_CHARS]}"
    return base if generation == 1 else f"{base}~{generation}"


@dataclass(frozen=True, kw_only=True)
class Found:
    """The newest task made for a row's business key."""

    task_id: str
    state: str
    business_key: str
    batch_id: str


def _same_subject(kind: str, subject: str, digest: str) -> list[Any]:
    return [
        TaskRow.job_kind == kind,
        TaskRow.input_key == subject,
        TaskRow.inputs_hash == digest,
        TaskRow.state != TaskState.INVALID.value,
    ]


def latest_task(session: Session, kind: str, subject: str, digest: str) -> Found | None:
    """The newest generation's task for these inputs (tasks older than business keys too)."""
    row = session.execute(
        select(TaskRow.id, TaskRow.state, TaskRow.business_key, TaskRow.batch_id)
        .where(*_same_subject(kind, subject, digest))
        .order_by(TaskRow.generation.desc(), TaskRow.submitted_at.desc(), TaskRow.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return Found(
        task_id=row.id, state=row.state, business_key=row.business_key, batch_id=row.batch_id
    )


def next_generation(session: Session, kind: str, subject: str, digest: str) -> int:
    """1 for inputs never submitted; else one past the newest generation."""
    newest = session.scalar(
        select(func.max(TaskRow.generation)).where(*_same_subject(kind, subject, digest))
    )
    return 1 if newest is None else int(newest) + 1


def request_hash(kind: str, rows: Sequence[BatchRow], *, again: bool) -> str:
    """sha256 of what a request asks for: the job kind, its rows as sent, and ``again``."""
    canonical = json.dumps(
        {"job_kind": kind, "rows": [[r.where, r.data] for r in rows], "again": again},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def lock_name(person: str, key: str) -> str:
    """The named row two requests under one key serialize on (``store.lock_rows``)."""
    return "idempotency " + hashlib.sha256(f"{person}\n{key}".encode()).hexdigest()[:32]


def recall(session: Session, person: str, key: str, request: str) -> dict[str, Any] | None:
    """What the request under ``key`` answered, or None if there was none.

    Raises StateError when the key was used for another request.
    """
    row = session.get(IdempotencyKeyRow, (person, key))
    if row is None:
        return None
    if row.request_hash != request:
        raise StateError(
            f"Idempotency-Key {key!r} was used for another request "
            f"(batch {row.batch_id}, {row.created_at:%Y-%m-%d %H:%M:%S} UTC)",
            hint="send a retry with the same body, or a new request with a new key",
            details={"idempotency_key": key, "batch_id": row.batch_id},
        )
    return dict(row.response)


def remember(
    session: Session, person: str, key: str, request: str, response: dict[str, Any]
) -> None:
    """Record the answer to the request under ``key`` in the caller's transaction."""
    session.add(
        IdempotencyKeyRow(
            person=person,
            key=key,
            request_hash=request,
            batch_id=str(response.get("batch_id", "")),
            response=response,
            created_at=datetime.now(UTC),
        )
    )
