"""Memory for the pipeline and for people: recall before generating, remember after, and the
``shipyard memory`` commands. Session memory (a task's working state) is read from the records
the workflow keeps; semantic and structured memory live in ``memory_items``."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from shipyard.errors import InputError
from shipyard.memory import Hit, Item, SearchPolicy, recall
from shipyard.model import CheckReport
from shipyard.orchestrator._runtime import Runtime
from shipyard.store import AttemptRow, MemoryRow, StepRow, TaskRow, transaction

__all__ = [
    "add",
    "export_lines",
    "import_lines",
    "policy",
    "purge",
    "readable_namespaces",
    "recall_for_task",
    "reindex",
    "search",
    "session_state",
]

EXPORT_VERSION = 1


def policy(rt: Runtime) -> SearchPolicy:
    s = rt.project.settings.memory
    return SearchPolicy(
        threshold=s.threshold, half_life_days=s.half_life_days, max_tokens=s.max_context_tokens
    )


def readable_namespaces(rt: Runtime, domain: str) -> list[str]:
    """A domain reads its own namespace, the global one, and those its config allows."""
    settings = rt.project.settings.domains.get(domain)
    reads = settings.memory_reads if settings is not None else []
    return list(dict.fromkeys([domain, "global", *reads]))


def search(
    rt: Runtime,
    query: str,
    *,
    namespaces: Sequence[str] = (),
    job_kind: str = "",
    tags: Sequence[str] = (),
    k: int = 10,
) -> list[Hit]:
    with rt.sessions() as session:
        return rt.memory.search(
            session,
            query,
            namespaces=list(namespaces) or sorted(rt.memory.namespaces),
            k=k,
            job_kind=job_kind,
            tags=tags,
            policy=policy(rt),
        )


def add(
    rt: Runtime,
    text: str,
    *,
    namespace: str,
    kind: str = "note",
    job_kind: str = "",
    input_key: str = "",
    tags: Sequence[str] = (),
    ttl_days: float | None = None,
) -> int:
    item = Item(
        text=text, namespace=namespace, kind=kind, job_kind=job_kind, input_key=input_key,
        tags=tuple(tags), ttl_days=ttl_days,
    )  # fmt: skip
    with transaction(rt.sessions) as session:
        [row] = rt.memory.add(session, [item])
        return row.id


def recall_for_task(rt: Runtime, task_id: str) -> list[dict[str, Any]]:
    """What a task's prompt gets: structured recall (this job kind and subject), then
    semantic recall over the namespaces its domain may read; deduplicated, capped."""
    settings = rt.project.settings.memory
    with rt.sessions() as session:
        task = session.get(TaskRow, task_id)
        if task is None:
            return []
        exact = recall(
            session, namespace=task.domain, job_kind=task.job_kind, input_key=task.input_key
        )
        query = f"{task.job_kind} {task.input_key} " + " ".join(
            str(v) for v in task.inputs.values()
        )
        hits = rt.memory.search(
            session,
            query,
            namespaces=readable_namespaces(rt, task.domain),
            k=settings.recall_items,
            policy=policy(rt),
        )
    budget = settings.max_context_tokens * 4
    items: list[dict[str, Any]] = []
    for item in exact:  # the records first: this subject's own history
        if len(item["text"]) <= budget:
            budget -= len(item["text"])
            items.append(item)
    seen = {item["id"] for item in items}
    for hit in hits:
        ident = f"mem-{hit.id}"
        if ident in seen or len(hit.text) > budget:
            continue
        budget -= len(hit.text)
        seen.add(ident)
        items.append(
            {
                "id": ident,
                "kind": hit.kind,
                "task": hit.task_id,
                "text": hit.text,
                "similarity": round(hit.similarity, 3),
                "namespace": hit.namespace,
            }
        )
    return items


def purge(rt: Runtime) -> int:
    with transaction(rt.sessions) as session:
        return rt.memory.purge(session)


def reindex(rt: Runtime) -> int:
    with transaction(rt.sessions) as session:
        return rt.memory.reindex(session)


def export_lines(rt: Runtime, *, namespaces: Sequence[str] = ()) -> Iterator[str]:
    with rt.sessions() as session:
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


def import_lines(rt: Runtime, source: Path, *, reembed: bool = False) -> int:
    """Import an export: every line is checked first, then all are written in one transaction.

    Vectors made by this project's embedder are kept; others are refused unless ``reembed``.
    """
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise InputError(f"{source}: no such file", hint="check the path") from exc
    embedder = rt.memory.embedder
    items: list[Item] = []
    vectors: list[Any] = []
    extras: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        where = f"{source}:{number}"
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if data.get("version", EXPORT_VERSION) != EXPORT_VERSION:
                raise ValueError(f"export version {data.get('version')!r} is not {EXPORT_VERSION}")
            theirs = (str(data.get("embedder", "")), int(data.get("dim", 0) or 0))
            created = datetime.fromisoformat(data["created_at"]) if data.get("created_at") else None
            expires = datetime.fromisoformat(data["expires_at"]) if data.get("expires_at") else None
            vector = None
            if data.get("vector") and theirs == (embedder.name, embedder.dim):
                vector = np.frombuffer(
                    base64.b64decode(data["vector"], validate=True), dtype=np.float32
                )
                if vector.shape != (embedder.dim,):
                    raise ValueError(f"the vector has {vector.shape[0]} values, not {embedder.dim}")
            item = Item(
                text=str(data["text"]),
                namespace=str(data["namespace"]),
                kind=str(data.get("kind", "note")),
                job_kind=str(data.get("job_kind", "")),
                input_key=str(data.get("input_key", "")),
                task_id=str(data.get("task_id", "")),
                tags=tuple(str(t) for t in data.get("tags", [])),
                meta=dict(data.get("meta", {})),
                ttl_days=0,  # its own expiry (or none) comes with it, below
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise InputError(
                f"{where}: not a memory item: {type(exc).__name__}: {exc}",
                hint="each line is one JSON object as `shipyard memory export` writes it",
            ) from exc
        if theirs != (embedder.name, embedder.dim) and not reembed:
            raise InputError(
                f"{where}: embedded by {theirs[0] or 'nothing'} ({theirs[1]} dimensions); this "
                f"project embeds with {embedder.name} ({embedder.dim})",
                hint="pass --reembed to embed the texts again with this project's embedder",
            )
        items.append(item)
        vectors.append(vector)
        extras.append({"created": created, "expires": expires, "id": data.get("id")})
    with transaction(rt.sessions) as session:
        rows = rt.memory.add(session, items, where=str(source), vectors=vectors)
        for row, extra in zip(rows, extras, strict=True):
            if extra["created"] is not None:
                row.created_at = extra["created"]
            row.expires_at = extra["expires"]
            row.meta = (row.meta or {}) | {"imported_from": str(source), "original_id": extra["id"]}
    return len(items)


def session_state(rt: Runtime, ref: str) -> dict[str, Any]:
    """A task's working state, as the workflow holds it in the records."""
    from shipyard.orchestrator._service import find_task

    task = find_task(rt, ref)
    with rt.sessions() as session:
        steps = session.scalars(
            select(StepRow).where(StepRow.task_id == task.id).order_by(StepRow.id)
        ).all()
        last = session.scalar(
            select(AttemptRow)
            .where(AttemptRow.task_id == task.id)
            .order_by(AttemptRow.number.desc())
            .limit(1)
        )
    report = CheckReport.from_dict(last.report) if last is not None and last.report else None
    return {
        "task": task.id,
        "state": task.state,
        "job_kind": task.job_kind,
        "inputs": task.inputs,
        "stage": steps[-1].stage if steps else "",
        "steps": [f"{s.stage}{s.attempt or ''}: {s.status}" for s in steps],
        "attempt": last.number if last else 0,
        "tier": last.tier if last else "",
        "recalled": list(last.recalled) if last else [],
        "feedback": list(last.feedback) if last else [],
        "open_findings": [f.to_dict() for f in report.findings] if report else [],
        "files": sorted(last.files) if last else [],
    }
