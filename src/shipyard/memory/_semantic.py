"""Semantic memory: items searched by meaning and by words, fused by reciprocal rank.

An item is text with metadata (namespace, kind, job kind, subject, tags, task) and an
embedding. A search runs two halves over the allowed namespaces:

- by meaning: the query's embedding against the namespace's in-process vector index;
- by words: FTS5 (SQLite) or ``tsvector`` (PostgreSQL) over the same rows;

then merges them with reciprocal rank fusion, drops what is expired, filtered out, or less
similar than the threshold (no context is better than wrong context), weighs the rest by
freshness, and keeps as many as fit the token cap.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import bindparam, delete, func, or_, select, text
from sqlalchemy.orm import Session

from shipyard.errors import ConfigError, InputError
from shipyard.memory._embed import Embedder, Vectors
from shipyard.memory._index import VectorIndex
from shipyard.store import MemoryRow

__all__ = ["MAX_TEXT", "Hit", "Item", "SearchPolicy", "SemanticMemory"]

MAX_TEXT = 20_000
"""Characters an item may hold: memory is context for a prompt, not a document store."""

SYNC_OVERLAP = 512
"""Ids re-read below the highest loaded one at each sync (late commits on PostgreSQL)."""

RRF_K = 60
"""Reciprocal rank fusion's constant: score = sum over halves of 1 / (RRF_K + rank)."""

_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True, kw_only=True)
class Item:
    """Something to remember."""

    text: str
    namespace: str
    kind: str = "note"
    job_kind: str = ""
    input_key: str = ""
    task_id: str = ""
    tags: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    ttl_days: float | None = None
    """Days until it expires; None for the namespace's time-to-live."""


@dataclass(frozen=True, kw_only=True)
class Hit:
    """A recalled item, with why it was recalled."""

    id: int
    namespace: str
    kind: str
    text: str
    job_kind: str
    input_key: str
    task_id: str
    tags: list[str]
    meta: dict[str, Any]
    created_at: datetime
    similarity: float
    """Cosine similarity of its embedding to the query's."""
    score: float
    """The fused rank score after freshness weighting (what orders the hits)."""
    found_by: tuple[str, ...]
    """``meaning``, ``words`` or both."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "kind": self.kind,
            "text": self.text,
            "job_kind": self.job_kind,
            "input_key": self.input_key,
            "task_id": self.task_id,
            "tags": self.tags,
            "similarity": round(self.similarity, 4),
            "score": round(self.score, 6),
            "found_by": list(self.found_by),
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, kw_only=True)
class SearchPolicy:
    """How recall weighs and cuts what it finds."""

    threshold: float = 0.3
    """Minimum cosine similarity: below it, nothing is recalled."""
    half_life_days: float = 30.0
    """A hit's score halves every this many days of age (0: no decay)."""
    max_tokens: int = 1500
    """Tokens of context (estimated at 4 characters each) handed to the generator."""


class SemanticMemory:
    """Add, search, purge and re-embed memory items for one project and one embedder."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        namespaces: Iterable[str],
        ttl_days: dict[str, float] | None = None,
        default_ttl_days: float = 0.0,
        hnsw_threshold: int = 250_000,
    ) -> None:
        self.embedder = embedder
        self.namespaces = set(namespaces)
        self.ttl_days = dict(ttl_days or {})
        self.default_ttl_days = default_ttl_days
        self.hnsw_threshold = hnsw_threshold
        self._indexes: dict[str, VectorIndex] = {}
        self._checked: dict[str, int] = {}
        """Per namespace: rows up to this id hold only this embedder's vectors."""
        self._lock = threading.Lock()

    # -- writing ----------------------------------------------------------------------------

    def _check(self, item: Item, where: str) -> None:
        if item.namespace not in self.namespaces:
            raise InputError(
                f"{where}: unknown namespace {item.namespace!r}",
                hint=f"namespaces: {', '.join(sorted(self.namespaces))} (a domain's, or global)",
            )
        if not item.text.strip():
            raise InputError(f"{where}: the text is empty", hint="remember something")
        if len(item.text) > MAX_TEXT:
            raise InputError(
                f"{where}: the text is {len(item.text)} characters, more than {MAX_TEXT}",
                hint="store a summary: memory is context for a prompt, not a document store",
            )

    def add(
        self,
        session: Session,
        items: Sequence[Item],
        *,
        where: str = "item",
        vectors: Sequence[Any] | None = None,
    ) -> list[MemoryRow]:
        """Embed and insert ``items`` in the caller's transaction (all or nothing).

        ``vectors``, when given, holds this embedder's vector per item (None where one must
        be made), as an import of this embedder's own export provides.
        """
        for number, item in enumerate(items, start=1):
            self._check(item, f"{where} {number}" if len(items) > 1 else where)
        if not items:
            return []
        given = list(vectors) if vectors is not None else [None] * len(items)
        missing = [n for n, v in enumerate(given) if v is None]
        if missing:
            made = self.embedder.embed([items[n].text for n in missing])
            for n, vector in zip(missing, made, strict=True):
                given[n] = vector
        vectors = given
        now = datetime.now(UTC)
        rows = []
        for item, vector in zip(items, vectors, strict=True):
            ttl = (
                item.ttl_days
                if item.ttl_days is not None
                else self.ttl_days.get(item.namespace, self.default_ttl_days)
            )
            row = MemoryRow(
                namespace=item.namespace,
                kind=item.kind,
                job_kind=item.job_kind,
                input_key=item.input_key,
                task_id=item.task_id,
                text=item.text,
                meta=item.meta,
                tags=sorted(set(item.tags)),
                embedder=self.embedder.name,
                dim=self.embedder.dim,
                vector=np.asarray(vector, dtype=np.float32).tobytes(),
                created_at=now,
                expires_at=now + timedelta(days=ttl) if ttl else None,
            )
            session.add(row)
            rows.append(row)
        session.flush()
        return rows

    def purge(self, session: Session, *, now: datetime | None = None) -> int:
        """Delete expired items; how many."""
        now = now or datetime.now(UTC)
        result = session.execute(
            delete(MemoryRow).where(MemoryRow.expires_at.is_not(None), MemoryRow.expires_at <= now)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def reindex(self, session: Session, *, batch: int = 256) -> int:
        """Re-embed every item whose vector is not this embedder's; how many."""
        done = 0
        while True:
            rows = session.scalars(
                select(MemoryRow)
                .where(or_(MemoryRow.embedder != self.embedder.name, MemoryRow.vector.is_(None)))
                .limit(batch)
            ).all()
            if not rows:
                break
            vectors = self.embedder.embed([r.text for r in rows])
            for row, vector in zip(rows, vectors, strict=True):
                row.embedder, row.dim = self.embedder.name, self.embedder.dim
                row.vector = np.asarray(vector, dtype=np.float32).tobytes()
            session.flush()
            done += len(rows)
        with self._lock:
            self._indexes.clear()  # ids were re-embedded in place: rebuild from the database
            self._checked.clear()
        return done

    # -- searching --------------------------------------------------------------------------

    def _index(self, session: Session, namespace: str) -> VectorIndex:
        with self._lock:
            index = self._indexes.get(namespace)
            if index is None:
                index = VectorIndex(self.embedder.dim, hnsw_threshold=self.hnsw_threshold)
                self._indexes[namespace] = index
        # The ids from a little behind the highest one loaded: on PostgreSQL an earlier id
        # can commit after a later one (another worker's slower transaction). Only the ids
        # are read here; vectors are fetched for those the index lacks.
        recent = session.scalars(
            select(MemoryRow.id).where(
                MemoryRow.namespace == namespace,
                MemoryRow.embedder == self.embedder.name,
                MemoryRow.id > index.last_id - SYNC_OVERLAP,
            )
        ).all()
        wanted = index.missing(recent)
        if not wanted:
            return index
        query = select(MemoryRow.id, MemoryRow.vector).order_by(MemoryRow.id)
        if len(wanted) > 1000:  # a first load: the range (the index skips ids it holds)
            query = query.where(
                MemoryRow.namespace == namespace,
                MemoryRow.embedder == self.embedder.name,
                MemoryRow.id > index.last_id - SYNC_OVERLAP,
            )
        else:
            query = query.where(MemoryRow.id.in_(wanted))
        rows = [
            (row_id, vector)
            for row_id, vector in session.execute(query).all()
            if vector is not None
        ]
        if rows:
            matrix = np.frombuffer(b"".join(v for _, v in rows), dtype=np.float32).reshape(
                len(rows), self.embedder.dim
            )
            index.add([i for i, _ in rows], matrix)
        return index

    def _refuse_other_embedders(self, session: Session, namespaces: Sequence[str]) -> None:
        """Refuse namespaces holding vectors of another embedder.

        Each process checks a namespace's rows once, then only the rows added since (a range
        on the primary key), so the check costs nothing once the namespace is known.
        """
        others: dict[str, int] = {}
        for namespace in namespaces:
            with self._lock:
                checked = self._checked.get(namespace, 0)
            newest = (
                session.scalar(
                    select(func.max(MemoryRow.id)).where(MemoryRow.namespace == namespace)
                )
                if not checked
                else None
            )
            rows = session.execute(
                select(MemoryRow.embedder, func.count(), func.max(MemoryRow.id))
                .where(
                    MemoryRow.namespace == namespace,
                    MemoryRow.id > checked,
                    or_(
                        MemoryRow.embedder < self.embedder.name,
                        MemoryRow.embedder > self.embedder.name,
                    ),
                )
                .group_by(MemoryRow.embedder)
            ).all()
            for name, count, _ in rows:
                others[name] = others.get(name, 0) + count
            if not rows:
                high = (
                    newest
                    if newest is not None
                    else session.scalar(
                        select(func.max(MemoryRow.id)).where(MemoryRow.id > checked)
                    )
                )
                with self._lock:
                    self._checked[namespace] = max(checked, int(high or 0))
        if others:
            found = ", ".join(
                f"{count} by {name or 'none'}" for name, count in sorted(others.items())
            )
            raise ConfigError(
                f"memory in {', '.join(namespaces)} holds vectors of another embedder ({found}); "
                f"this project embeds with {self.embedder.name}",
                hint="run `shipyard memory reindex` to re-embed them, or switch memory.embedder "
                "back",
            )

    def words(self, session: Session, query: str, namespaces: Sequence[str], k: int) -> list[int]:
        """Row ids matching the query's words, best first (FTS5 / tsvector)."""
        terms = [w.lower() for w in _WORD.findall(query)][:32]
        if not terms:
            return []
        cap = max(4 * k, 50)
        if session.get_bind().dialect.name == "sqlite":
            # Rank inside FTS5 first (bm25, capped), then keep the allowed namespaces.
            match = " OR ".join(f'"{t}"' for t in terms)
            statement = text(
                "SELECT f.rowid FROM (SELECT rowid, bm25(memory_fts) AS rank FROM memory_fts "
                "WHERE memory_fts MATCH :match ORDER BY rank LIMIT :cap) f "
                "JOIN memory_items m ON m.id = f.rowid "
                "WHERE m.namespace IN :namespaces ORDER BY f.rank LIMIT :k"
            ).bindparams(bindparam("namespaces", expanding=True))
            params = {"match": match, "namespaces": list(namespaces), "k": k, "cap": cap}
            return [int(r) for (r,) in session.execute(statement, params)]
        statement = text(
            "SELECT id FROM memory_items, to_tsquery('english', :match) q "
            "WHERE text_tsv @@ q AND namespace IN :namespaces "
            "ORDER BY ts_rank(text_tsv, q) DESC LIMIT :k"
        ).bindparams(bindparam("namespaces", expanding=True))
        params = {"match": " | ".join(terms), "namespaces": list(namespaces), "k": k}
        return [int(r) for (r,) in session.execute(statement, params)]

    def search(
        self,
        session: Session,
        query: str,
        *,
        namespaces: Sequence[str],
        k: int = 5,
        job_kind: str = "",
        tags: Sequence[str] = (),
        max_age_days: float | None = None,
        policy: SearchPolicy | None = None,
        now: datetime | None = None,
    ) -> list[Hit]:
        """The best ``k`` items for ``query`` in ``namespaces`` (see the module docstring)."""
        policy = policy or SearchPolicy()
        now = now or datetime.now(UTC)
        unknown = [n for n in namespaces if n not in self.namespaces]
        if unknown:
            raise InputError(
                f"unknown namespace(s): {', '.join(unknown)}",
                hint=f"namespaces: {', '.join(sorted(self.namespaces))}",
            )
        if not query.strip():
            raise InputError("the query is empty", hint="say what to look for")
        self._refuse_other_embedders(session, namespaces)
        wanted = max(4 * k, 20)
        vector = self.embedder.embed([query[:MAX_TEXT]])[0]
        fused = _fuse(
            meaning=self._by_meaning(session, vector, namespaces, wanted),
            words=self.words(session, query, namespaces, wanted),
        )
        if not fused:
            return []
        rows = _live_rows(session, fused, now=now, job_kind=job_kind, max_age_days=max_age_days)
        allowed = set(namespaces)
        hits: list[Hit] = []
        for row in rows:
            if row.namespace not in allowed:
                continue
            if tags and not set(tags) <= set(row.tags or []):
                continue
            hit = _weigh(row, vector, fused[row.id], policy=policy, now=now)
            if hit is not None:
                hits.append(hit)
        hits.sort(key=lambda h: (-h.score, -h.similarity, -h.id))
        return _fit(hits, k=k, max_tokens=policy.max_tokens)

    def _by_meaning(
        self, session: Session, vector: Vectors, namespaces: Sequence[str], wanted: int
    ) -> list[int]:
        """The ``wanted`` ids nearest ``vector`` across the namespaces' indexes, best first."""
        similarity: dict[int, float] = {}
        for namespace in namespaces:
            for row_id, found in self._index(session, namespace).search(vector, wanted):
                similarity[row_id] = found
        return sorted(similarity, key=lambda i: -similarity[i])[:wanted]

    def exact_neighbours(self, session: Session, query: str, namespace: str, k: int) -> list[int]:
        """Brute-force nearest ids by meaning alone (what the index is measured against)."""
        vector = self.embedder.embed([query])[0]
        return [i for i, _ in self._index(session, namespace).exact(vector, k)]

    def nearest(self, session: Session, query: str, namespace: str, k: int) -> list[int]:
        """The index's nearest ids by meaning alone."""
        vector = self.embedder.embed([query])[0]
        return [i for i, _ in self._index(session, namespace).search(vector, k)]


@dataclass(frozen=True, kw_only=True)
class _Fused:
    """One id's standing after reciprocal rank fusion."""

    score: float
    """Sum over the halves that found it of 1 / (RRF_K + rank)."""
    found_by: tuple[str, ...]
    """``meaning``, ``words`` or both, in that order."""


def _fuse(*, meaning: Sequence[int], words: Sequence[int]) -> dict[int, _Fused]:
    """Reciprocal rank fusion of the two halves' rankings."""
    scores: dict[int, float] = {}
    sources: dict[int, list[str]] = {}
    for name, ranked in (("meaning", meaning), ("words", words)):
        for rank, row_id in enumerate(ranked, start=1):
            scores[row_id] = scores.get(row_id, 0.0) + 1.0 / (RRF_K + rank)
            sources.setdefault(row_id, []).append(name)
    return {i: _Fused(score=scores[i], found_by=tuple(sources[i])) for i in scores}


def _live_rows(
    session: Session,
    ids: Iterable[int],
    *,
    now: datetime,
    job_kind: str,
    max_age_days: float | None,
) -> Sequence[MemoryRow]:
    """The rows of ``ids`` not expired, of ``job_kind`` and young enough (when asked)."""
    conditions = [
        MemoryRow.id.in_(list(ids)),  # by primary key; the rest is checked per row
        or_(MemoryRow.expires_at.is_(None), MemoryRow.expires_at > now),
    ]
    if job_kind:
        conditions.append(MemoryRow.job_kind == job_kind)
    if max_age_days is not None:
        conditions.append(MemoryRow.created_at >= now - timedelta(days=max_age_days))
    return session.scalars(select(MemoryRow).where(*conditions)).all()


def _weigh(
    row: MemoryRow, vector: Vectors, fused: _Fused, *, policy: SearchPolicy, now: datetime
) -> Hit | None:
    """The row as a hit, its fused score weighed by freshness; None when its similarity to
    the query is below the threshold (or it has no vector)."""
    if row.vector is None:
        return None
    stored = np.frombuffer(row.vector, dtype=np.float32)
    similarity = float(stored @ vector)
    if similarity < policy.threshold:
        return None
    age = max(0.0, (now - row.created_at).total_seconds() / 86400)
    decay = 0.5 ** (age / policy.half_life_days) if policy.half_life_days else 1.0
    return Hit(
        id=row.id,
        namespace=row.namespace,
        kind=row.kind,
        text=row.text,
        job_kind=row.job_kind,
        input_key=row.input_key,
        task_id=row.task_id,
        tags=list(row.tags or []),
        meta=dict(row.meta or {}),
        created_at=row.created_at,
        similarity=similarity,
        score=fused.score * decay,
        found_by=fused.found_by,
    )


def _fit(hits: Sequence[Hit], *, k: int, max_tokens: int) -> list[Hit]:
    """At most ``k`` of ``hits``, in order, whose texts fit ``max_tokens`` (4 characters each)."""
    kept: list[Hit] = []
    budget = max_tokens * 4
    for hit in hits:
        if len(kept) == k:
            break
        if len(hit.text) > budget:
            continue  # too long for what is left: a shorter one may still fit
        budget -= len(hit.text)
        kept.append(hit)
    return kept
