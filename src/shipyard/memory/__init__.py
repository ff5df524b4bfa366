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
from shipyard.memory._exchange import EXPORT_VERSION, export_lines, import_lines
from shipyard.memory._index import VectorIndex
from shipyard.memory._recall import (
    outcome_memories,
    readable_namespaces,
    recall_for_task,
    search_policy,
    session_state,
)
from shipyard.memory._semantic import MAX_TEXT, Hit, Item, SearchPolicy, SemanticMemory
from shipyard.memory._structured import recall, remember

__all__ = [
    "EXPORT_VERSION",
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
    "export_lines",
    "import_lines",
    "load_embedder",
    "outcome_memories",
    "readable_namespaces",
    "recall",
    "recall_for_task",
    "remember",
    "search_policy",
    "session_state",
]
