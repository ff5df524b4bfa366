"""Artifacts: immutable, content-addressed versions of generated output, with signed
provenance (in-toto Statement v1, SLSA Provenance v1, DSSE, ed25519), their lineage, the
diffs between versions and their retention."""

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
from shipyard.artifacts._diff import changed_lines, file_diff
from shipyard.artifacts._lineage import (
    GcReport,
    collect_garbage,
    diff_against_previous,
    diff_artifacts,
    find_artifact,
    lineage,
    openlineage_events,
    previous_version,
    produced_with,
)
from shipyard.artifacts._provenance import Attempt, build_statement, check_statement
from shipyard.artifacts._signing import (
    ArtifactCheck,
    provenance_record,
    sign_provenance,
    verify_artifact,
)
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
    "ArtifactCheck",
    "ArtifactStore",
    "Attempt",
    "DatabaseArtifactStore",
    "GcReport",
    "SigningKey",
    "StoredArtifact",
    "build_statement",
    "changed_lines",
    "check_statement",
    "collect_garbage",
    "diff_against_previous",
    "diff_artifacts",
    "digest_of",
    "file_diff",
    "find_artifact",
    "lineage",
    "openlineage_events",
    "pae",
    "previous_version",
    "produced_with",
    "provenance_record",
    "sign_provenance",
    "sign_statement",
    "verify_artifact",
    "verify_envelope",
]
