"""The audit log: every decision and effect, append-only, each entry chained to the last.

An entry's hash is SHA-256 over the previous entry's hash and the entry's own fields in
canonical JSON. Appending locks the chain's head row first (an UPDATE, so SQLite takes its
write lock and PostgreSQL its row lock), so concurrent writers queue instead of forking the
chain; an entry is written in the same transaction as the decision or effect it records.
``verify`` recomputes the chain and names the first entry that does not fit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from shipyard.store import AuditHeadRow, AuditRow

__all__ = [
    "GENESIS",
    "AuditCheck",
    "append",
    "entries",
    "entry",
    "export",
    "head",
    "page",
    "verify",
]

GENESIS = "0" * 64
"""The hash the first entry chains to."""


def _digest(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def _fields(row: AuditRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at,
        "actor": row.actor,
        "action": row.action,
        "resource": row.resource,
        "decision": row.decision,
        "reason": row.reason,
        "task_id": row.task_id,
        "detail": row.detail,
    }


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    resource: str,
    decision: str,
    reason: str = "",
    task_id: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditRow:
    """Add one entry in the caller's transaction (it commits or rolls back with it)."""
    # Taking the next number locks the head until the caller commits: one chain, however
    # many workers append at once.
    head = session.execute(
        update(AuditHeadRow)
        .where(AuditHeadRow.id == 1)
        .values(seq=AuditHeadRow.seq + 1)
        .returning(AuditHeadRow.seq, AuditHeadRow.hash)
    ).one()
    row = AuditRow(
        seq=int(head.seq),
        at=datetime.now(UTC).isoformat(timespec="microseconds"),
        actor=actor[:200],
        action=action[:40],
        resource=resource[:300],
        decision=decision[:40],
        reason=reason,
        task_id=task_id,
        detail=json.loads(json.dumps(detail or {}, default=str)),
        prev_hash=str(head.hash),
    )
    row.hash = _digest(row.prev_hash, _fields(row))
    session.add(row)
    session.execute(update(AuditHeadRow).where(AuditHeadRow.id == 1).values(hash=row.hash))
    return row


def head() -> Select[int, str]:
    """The query for the chain's head (sequence number and hash of its last entry)."""
    return select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.id == 1)


def entries(session: Session, *, task_id: str = "", batch: int = 1000) -> Iterator[AuditRow]:
    """Entries in order (of one task when given), read in batches."""
    last = 0
    while True:
        query = select(AuditRow).where(AuditRow.seq > last).order_by(AuditRow.seq).limit(batch)
        if task_id:
            query = query.where(AuditRow.task_id == task_id)
        rows = session.scalars(query).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def page(session: Session, *, offset: int, limit: int) -> list[AuditRow]:
    """Entries in order, ``limit`` of them from the ``offset``-th."""
    return list(
        session.scalars(select(AuditRow).order_by(AuditRow.seq).offset(offset).limit(limit)).all()
    )


@dataclass(frozen=True, kw_only=True)
class AuditCheck:
    ok: bool
    entries: int
    """Entries checked (up to the first broken one)."""
    first_broken: int | None = None
    """The sequence number of the first entry that does not fit, if any."""
    problem: str = ""


def verify(session: Session) -> AuditCheck:
    """Recompute the chain from the first entry; stop at the first that does not fit."""
    prev, expected_seq, count = GENESIS, 1, 0
    for row in entries(session):
        if row.seq != expected_seq:
            return AuditCheck(
                ok=False,
                entries=count,
                first_broken=expected_seq,
                problem=f"entry {expected_seq} is missing (the next one is {row.seq})",
            )
        if row.prev_hash != prev:
            return AuditCheck(
                ok=False,
                entries=count,
                first_broken=row.seq,
                problem=f"entry {row.seq} does not chain to entry {row.seq - 1}'s hash",
            )
        if _digest(prev, _fields(row)) != row.hash:
            return AuditCheck(
                ok=False,
                entries=count,
                first_broken=row.seq,
                problem=f"entry {row.seq} was changed after it was written "
                "(its hash does not match its content)",
            )
        prev, expected_seq, count = row.hash, expected_seq + 1, count + 1
    head = session.execute(select(AuditHeadRow.seq, AuditHeadRow.hash)).one()
    if (int(head.seq), str(head.hash)) != (count, prev):
        return AuditCheck(
            ok=False,
            entries=count,
            first_broken=count + 1 if int(head.seq) > count else count,
            problem=f"the chain ends at entry {count} but its head says {head.seq}: "
            "entries were removed from the end",
        )
    return AuditCheck(ok=True, entries=count)


def entry(row: AuditRow) -> dict[str, Any]:
    """An entry as plain data, with its hash and its predecessor's (what export writes)."""
    return _fields(row) | {"prev_hash": row.prev_hash, "hash": row.hash}


def export(session: Session, out: TextIO, *, task_id: str = "") -> int:
    """Write entries as JSON Lines (with their hashes); the count written."""
    written = 0
    for row in entries(session, task_id=task_id):
        out.write(json.dumps(entry(row)) + "\n")
        written += 1
    return written
