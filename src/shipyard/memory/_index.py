"""In-process vector indexes, one per (namespace, embedder), fed from the database.

The database holds every vector (the source of truth, on SQLite and PostgreSQL alike); each
process keeps an index per namespace that it brings up to date before a search by loading
the rows added since it last looked (ids only grow). A small namespace is searched exactly
with numpy; past ``hnsw_threshold`` vectors it moves to a usearch HNSW graph. Rows that
expire or are purged stay in the index until it is rebuilt, so every hit is re-checked
against the database before it is returned.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["VectorIndex"]

Vectors = npt.NDArray[np.float32]


class VectorIndex:
    """Vectors of one namespace and one embedder; thread-safe."""

    def __init__(self, dim: int, *, hnsw_threshold: int = 250_000) -> None:
        self.dim = dim
        self.hnsw_threshold = hnsw_threshold
        self.last_id = 0
        """The highest row id loaded so far (the next sync loads ids above it)."""
        self._lock = threading.Lock()
        self._ids = np.zeros(0, dtype=np.int64)
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self._pending: list[tuple[npt.NDArray[np.int64], Vectors]] = []
        self._hnsw: object | None = None
        self._known: set[int] = set()

    def missing(self, ids: Sequence[int]) -> list[int]:
        """Those of ``ids`` the index does not hold."""
        with self._lock:
            return [int(i) for i in ids if int(i) not in self._known]

    def __len__(self) -> int:
        return int(self._ids.shape[0]) + sum(len(i) for i, _ in self._pending)

    @property
    def kind(self) -> str:
        return "hnsw" if self._hnsw is not None else "exact"

    def add(self, ids: Sequence[int], vectors: Vectors) -> None:
        """Add rows; ids already in the index are skipped (syncs overlap on purpose)."""
        with self._lock:
            fresh = [n for n, i in enumerate(ids) if int(i) not in self._known]
            if not fresh:
                return
            id_array = np.asarray([ids[n] for n in fresh], dtype=np.int64)
            self._pending.append((id_array, np.asarray(vectors, dtype=np.float32)[fresh]))
            self._known.update(int(i) for i in id_array)
            self.last_id = max(self.last_id, int(id_array.max()))

    def _absorb(self) -> None:
        if not self._pending:
            return
        new_ids = np.concatenate([i for i, _ in self._pending])
        new_vectors = np.concatenate([v for _, v in self._pending])
        self._pending.clear()
        self._ids = np.concatenate([self._ids, new_ids])
        self._matrix = np.concatenate([self._matrix, new_vectors])
        if self._hnsw is not None:
            self._hnsw.add(new_ids, new_vectors)  # type: ignore[attr-defined]
        elif len(self._ids) >= self.hnsw_threshold:
            from usearch.index import Index

            index = Index(
                ndim=self.dim,
                metric="cos",
                dtype="f32",
                connectivity=32,
                expansion_add=256,
                expansion_search=512,
            )
            index.add(self._ids, self._matrix)
            self._hnsw = index

    def search(self, query: Vectors, k: int) -> list[tuple[int, float]]:
        """The ``k`` nearest (row id, cosine similarity), best first."""
        with self._lock:
            self._absorb()
            if not len(self._ids):
                return []
            k = min(k, len(self._ids))
            if self._hnsw is not None:
                found = self._hnsw.search(query, k)  # type: ignore[attr-defined]
                return [
                    (int(key), 1.0 - float(distance))
                    for key, distance in zip(found.keys, found.distances, strict=False)
                ]
            scores = self._matrix @ query
            top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
            top = top[np.argsort(-scores[top])]
            return [(int(self._ids[i]), float(scores[i])) for i in top]

    def exact(self, query: Vectors, k: int) -> list[tuple[int, float]]:
        """Brute force over every vector, whatever the index kind (for recall checks)."""
        with self._lock:
            self._absorb()
            if not len(self._ids):
                return []
            scores = self._matrix @ query
            top = np.argsort(-scores)[:k]
            return [(int(self._ids[i]), float(scores[i])) for i in top]
