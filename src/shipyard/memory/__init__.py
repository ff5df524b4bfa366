"""Memory: what the pipeline recalls before generating and remembers after a task ends.

- structured: exact queries over Shipyard's records (this job kind and subject, failures);
- semantic: items searched by meaning and by words (hybrid, reciprocal rank fusion);
- session: a task's working state (read from the records the workflow keeps).
"""

from __future__ import annotations

from shipyard.memory._embed import (
    Embedder,
    HashEmbedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    load_embedder,
)
from shipyard.memory._index import VectorIndex
from shipyard.memory._semantic import MAX_TEXT, Hit, Item, SearchPolicy, SemanticMemory
from shipyard.memory._structured import recall, remember

__all__ = [
    "MAX_TEXT",
    "Embedder",
    "HashEmbedder",
    "Hit",
    "Item",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "SearchPolicy",
    "SemanticMemory",
    "VectorIndex",
    "load_embedder",
    "recall",
    "remember",
]
