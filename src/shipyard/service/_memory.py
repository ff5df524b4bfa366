"""Memory for people: search, notes, expiry, re-embedding, export and import, and a task's
working state (``shipyard memory``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from shipyard import memory
from shipyard.memory import Hit, Item
from shipyard.orchestrator import Runtime
from shipyard.service._queries import find_task
from shipyard.store import transaction

__all__ = [
    "add_memory",
    "export_memory",
    "import_memory",
    "purge_memory",
    "reindex_memory",
    "search_memory",
    "session_state",
]


def search_memory(
    rt: Runtime,
    query: str,
    *,
    namespaces: Sequence[str] = (),
    job_kind: str = "",
    tags: Sequence[str] = (),
    k: int = 10,
) -> list[Hit]:
    """What recall would find for ``query`` (every namespace when none is named)."""
    with rt.sessions() as session:
        return rt.memory.search(
            session,
            query,
            namespaces=list(namespaces) or sorted(rt.memory.namespaces),
            k=k,
            job_kind=job_kind,
            tags=tags,
            policy=memory.search_policy(rt.project.settings.memory),
        )


def add_memory(
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
    """Remember a person's note; its id."""
    item = Item(
        text=text, namespace=namespace, kind=kind, job_kind=job_kind, input_key=input_key,
        tags=tuple(tags), ttl_days=ttl_days,
    )  # fmt: skip
    with transaction(rt.sessions) as session:
        [row] = rt.memory.add(session, [item])
        return row.id


def purge_memory(rt: Runtime) -> int:
    """Remove expired items; how many."""
    with transaction(rt.sessions) as session:
        return rt.memory.purge(session)


def reindex_memory(rt: Runtime) -> int:
    """Embed every item again with the project's embedder; how many."""
    with transaction(rt.sessions) as session:
        return rt.memory.reindex(session)


def export_memory(rt: Runtime, *, namespaces: Sequence[str] = ()) -> Iterator[str]:
    """JSON Lines of every item (in ``namespaces``), oldest first."""
    with rt.sessions() as session:
        yield from memory.export_lines(session, namespaces=namespaces)


def import_memory(rt: Runtime, source: Path, *, reembed: bool = False) -> int:
    """Import an export, all lines or none; how many items."""
    with transaction(rt.sessions) as session:
        return memory.import_lines(session, rt.memory, source, reembed=reembed)


def session_state(rt: Runtime, ref: str) -> dict[str, Any]:
    """A task's working state, as the workflow holds it in the records."""
    task = find_task(rt, ref)
    with rt.sessions() as session:
        return memory.session_state(session, task)
