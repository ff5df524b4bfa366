"""Memory: what the pipeline recalls before generating and remembers after a task ends."""

from __future__ import annotations

from shipyard.memory._structured import recall, remember

__all__ = ["recall", "remember"]
