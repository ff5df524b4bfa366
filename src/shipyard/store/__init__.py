"""The store: Shipyard's records in one SQL database (SQLite by default, PostgreSQL to scale).

Tables are SQLAlchemy 2 models; the schema is migrated with Alembic on every start.
"""

from __future__ import annotations

from shipyard.store._engine import (
    insert_ignore,
    make_engine,
    migrate,
    schema_status,
    session_factory,
    transaction,
)
from shipyard.store._schema import (
    ArtifactRow,
    AttemptRow,
    AuditHeadRow,
    AuditRow,
    Base,
    DecisionRow,
    MemoryRow,
    ProvenanceRow,
    ReleaseRow,
    ReleaseSampleRow,
    ReplayRunRow,
    SpanRow,
    StepRow,
    TaskRow,
    ToolCallRow,
    include_object,
)

__all__ = [
    "ArtifactRow",
    "AttemptRow",
    "AuditHeadRow",
    "AuditRow",
    "Base",
    "DecisionRow",
    "MemoryRow",
    "ProvenanceRow",
    "ReleaseRow",
    "ReleaseSampleRow",
    "ReplayRunRow",
    "SpanRow",
    "StepRow",
    "TaskRow",
    "ToolCallRow",
    "include_object",
    "insert_ignore",
    "make_engine",
    "migrate",
    "schema_status",
    "session_factory",
    "transaction",
]
