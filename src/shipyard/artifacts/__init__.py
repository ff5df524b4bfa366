"""Artifacts: immutable, content-addressed versions of generated output, with signed
provenance (in-toto Statement v1, SLSA Provenance v1, DSSE, ed25519)."""

from __future__ import annotations

from shipyard.artifacts._attest import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    SigningKey,
    digest_of,
    pae,
    sign_statement,
    verify_envelope,
)
from shipyard.artifacts._provenance import Attempt, build_statement, check_statement
from shipyard.artifacts._store import (
    ArtifactBackend,
    ArtifactStore,
    DatabaseArtifactStore,
    StoredArtifact,
)

__all__ = [
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "ArtifactBackend",
    "ArtifactStore",
    "Attempt",
    "DatabaseArtifactStore",
    "SigningKey",
    "StoredArtifact",
    "build_statement",
    "check_statement",
    "digest_of",
    "pae",
    "sign_statement",
    "verify_envelope",
]
