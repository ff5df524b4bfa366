"""Memory out and in: JSON Lines with each item's embedder and vector, so a project can move
its memory or seed another's. An import is checked line by line before anything is written."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import InputError
from shipyard.memory._embed import Embedder, Vectors
from shipyard.memory._semantic import Item, SemanticMemory
from shipyard.store import MemoryRow

__all__ = ["EXPORT_VERSION", "export_lines", "import_lines"]

EXPORT_VERSION = 1


def export_lines(session: Session, *, namespaces: Sequence[str] = ()) -> Iterator[str]:
    """One JSON line per item, oldest first (a generator: the session must stay open)."""
    query = select(MemoryRow).order_by(MemoryRow.id)
    if namespaces:
        query = query.where(MemoryRow.namespace.in_(namespaces))
    for row in session.scalars(query).yield_per(500):
        yield json.dumps(
            {
                "version": EXPORT_VERSION,
                "id": row.id,
                "namespace": row.namespace,
                "kind": row.kind,
                "job_kind": row.job_kind,
                "input_key": row.input_key,
                "task_id": row.task_id,
                "text": row.text,
                "tags": row.tags or [],
                "meta": row.meta or {},
                "created_at": row.created_at.isoformat(),
                "expires_at": row.expires_at.isoformat() if row.expires_at else None,
                "embedder": row.embedder,
                "dim": row.dim,
                "vector": base64.b64encode(row.vector).decode() if row.vector else None,
            },
            ensure_ascii=False,
        )


def import_lines(
    session: Session, memory: SemanticMemory, source: Path, *, reembed: bool = False
) -> int:
    """Import an export: every line is checked first, then all are written in ``session``.

    Vectors made by this project's embedder are kept; others are refused unless ``reembed``.
    """
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise InputError(f"{source}: no such file", hint="check the path") from exc
    embedder = memory.embedder
    entries: list[_Entry] = []
    for number, line in enumerate(lines, start=1):
        where = f"{source}:{number}"
        if not line.strip():
            continue
        entry = _parse_line(line, where, embedder)
        if entry.embedded_by != (embedder.name, embedder.dim) and not reembed:
            theirs = entry.embedded_by
            raise InputError(
                f"{where}: embedded by {theirs[0] or 'nothing'} ({theirs[1]} dimensions); this "
                f"project embeds with {embedder.name} ({embedder.dim})",
                hint="pass --reembed to embed the texts again with this project's embedder",
            )
        entries.append(entry)
    rows = memory.add(
        session, [e.item for e in entries], where=str(source), vectors=[e.vector for e in entries]
    )
    for row, entry in zip(rows, entries, strict=True):
        if entry.created_at is not None:
            row.created_at = entry.created_at
        row.expires_at = entry.expires_at
        row.meta = (row.meta or {}) | {"imported_from": str(source), "original_id": entry.id}
    return len(entries)


@dataclass(frozen=True, kw_only=True)
class _Entry:
    """One checked line of an export."""

    item: Item
    vector: Vectors | None
    """The exported vector when this project's embedder made it; None: embed the text."""
    embedded_by: tuple[str, int]
    """(embedder, dimensions) that made the exported vector."""
    created_at: datetime | None
    expires_at: datetime | None
    """The item's own expiry (None: it never expires)."""
    id: Any
    """Its id in the project it was exported from."""


def _parse_line(line: str, where: str, embedder: Embedder) -> _Entry:
    """One line as an item, or InputError saying why it is not one."""
    try:
        data = json.loads(line)
        if data.get("version", EXPORT_VERSION) != EXPORT_VERSION:
            raise ValueError(f"export version {data.get('version')!r} is not {EXPORT_VERSION}")
        theirs = (str(data.get("embedder", "")), int(data.get("dim", 0) or 0))
        created = datetime.fromisoformat(data["created_at"]) if data.get("created_at") else None
        expires = datetime.fromisoformat(data["expires_at"]) if data.get("expires_at") else None
        vector = _own_vector(data, theirs, embedder)
        item = Item(
            text=str(data["text"]),
            namespace=str(data["namespace"]),
            kind=str(data.get("kind", "note")),
            job_kind=str(data.get("job_kind", "")),
            input_key=str(data.get("input_key", "")),
            task_id=str(data.get("task_id", "")),
            tags=tuple(str(t) for t in data.get("tags", [])),
            meta=dict(data.get("meta", {})),
            ttl_days=0,  # its own expiry (or none) comes with it: _Entry.expires_at
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise InputError(
            f"{where}: not a memory item: {type(exc).__name__}: {exc}",
            hint="each line is one JSON object as `shipyard memory export` writes it",
        ) from exc
    return _Entry(
        item=item,
        vector=vector,
        embedded_by=theirs,
        created_at=created,
        expires_at=expires,
        id=data.get("id"),
    )


def _own_vector(
    data: dict[str, Any], theirs: tuple[str, int], embedder: Embedder
) -> Vectors | None:
    """The exported vector, decoded, when ``embedder`` made it; else None."""
    if not data.get("vector") or theirs != (embedder.name, embedder.dim):
        return None
    vector = np.frombuffer(base64.b64decode(data["vector"], validate=True), dtype=np.float32)
    if vector.shape != (embedder.dim,):
        raise ValueError(f"the vector has {vector.shape[0]} values, not {embedder.dim}")
    return vector
