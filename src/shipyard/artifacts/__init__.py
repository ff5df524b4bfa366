"""Artifacts: immutable, content-addressed versions of generated output, with provenance."""

from __future__ import annotations

from shipyard.artifacts._store import ArtifactStore, StoredArtifact

__all__ = ["ArtifactStore", "StoredArtifact"]
