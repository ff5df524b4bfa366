"""Structured memory: what happened before to this job kind and this subject.

Recall reads Shipyard's own records (earlier approved output for the same input key, earlier
rejections and their reasons, recent failed findings for the job kind); remember writes the
outcome of a finished task so the next one can recall it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shipyard.memory._semantic import MAX_TEXT, Item, SemanticMemory
from shipyard.store import MemoryRow

__all__ = ["recall", "remember"]


def recall(
    session: Session, *, namespace: str, job_kind: str, input_key: str, limit: int = 5
) -> list[dict[str, Any]]:
    """Recent memories for this job kind and key (newest first), then the kind's failures."""
    live = or_(MemoryRow.expires_at.is_(None), MemoryRow.expires_at > datetime.now(UTC))
    same_key = session.scalars(
        select(MemoryRow)
        .where(
            MemoryRow.namespace == namespace,
            MemoryRow.job_kind == job_kind,
            MemoryRow.input_key == input_key,
            live,
        )
        .order_by(MemoryRow.id.desc())
        .limit(limit)
    ).all()
    failures = session.scalars(
        select(MemoryRow)
        .where(
            MemoryRow.namespace == namespace,
            MemoryRow.job_kind == job_kind,
            MemoryRow.kind == "failed",
            MemoryRow.input_key != input_key,
            live,
        )
        .order_by(MemoryRow.id.desc())
        .limit(max(0, limit - len(same_key)))
    ).all()
    return [
        {"id": f"mem-{row.id}", "kind": row.kind, "task": row.task_id, "text": row.text}
        for row in (*same_key, *failures)
    ]


def remember(
    session: Session,
    memory: SemanticMemory,
    *,
    namespace: str,
    kind: str,
    job_kind: str,
    input_key: str,
    task_id: str,
    text: str,
    meta: dict[str, Any] | None = None,
    tags: tuple[str, ...] = (),
) -> None:
    """Record one outcome, embedded so semantic recall finds it too; remembering the same
    (task, kind) twice keeps the first."""
    exists = session.scalar(
        select(MemoryRow.id).where(MemoryRow.task_id == task_id, MemoryRow.kind == kind)
    )
    if exists is None:
        memory.add(
            session,
            [
                Item(
                    text=text[:MAX_TEXT],
                    namespace=namespace,
                    kind=kind,
                    job_kind=job_kind,
                    input_key=input_key,
                    task_id=task_id,
                    meta=meta or {},
                    tags=tags,
                )
            ],
            where=f"memory of task {task_id}",
        )
