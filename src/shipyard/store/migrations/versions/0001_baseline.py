"""Baseline: Shipyard's whole schema, in one revision.

Nothing had been released when the thirteen migrations written during development were
squashed into this one, so no database needs the old steps. It builds what the models in
``shipyard.store._schema`` describe, plus what they cannot say:

- full-text search over ``memory_items.text``: on SQLite an external-content FTS5 table
  (``memory_fts``, porter stemming) kept in step by three triggers; on PostgreSQL a generated
  ``tsvector`` column (``text_tsv``, English) with a GIN index. ``shipyard.memory`` queries
  them by these names, and ``include_object`` keeps them out of schema comparisons;
- the audit chain's head row (id 1, sequence 0, the genesis hash) that every append locks.

Later changes are new revisions on top of this one.

Revision ID: 0001_baseline
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)
"""``UtcDateTime`` in the models: a timezone-aware timestamp on both databases."""

GENESIS = "0" * 64
"""The hash the first audit entry chains from (``shipyard.observe._audit.GENESIS``)."""

SQLITE_FULL_TEXT = [
    "CREATE VIRTUAL TABLE memory_fts USING fts5("
    "text, content='memory_items', content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER memory_fts_insert AFTER INSERT ON memory_items BEGIN "
    "INSERT INTO memory_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER memory_fts_delete AFTER DELETE ON memory_items BEGIN "
    "INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER memory_fts_update AFTER UPDATE OF text ON memory_items BEGIN "
    "INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO memory_fts(rowid, text) VALUES (new.id, new.text); END",
]
"""FTS5 over memory text: the table reads rows from ``memory_items``; triggers index them."""

POSTGRES_FULL_TEXT = [
    "ALTER TABLE memory_items ADD COLUMN text_tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED",
    "CREATE INDEX ix_memory_text_tsv ON memory_items USING gin (text_tsv)",
]
"""A stored, generated tsvector of memory text and its GIN index."""


def upgrade() -> None:
    _tasks()
    _artifacts()
    _releases()
    _memory()
    _governance()
    _observability()
    _scale_out()
    _api_tokens()


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for name in ("memory_fts_update", "memory_fts_delete", "memory_fts_insert"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS memory_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_memory_text_tsv")
        op.execute("ALTER TABLE memory_items DROP COLUMN IF EXISTS text_tsv")
    for table in (
        "api_tokens", "artifact_manifests", "artifact_blobs", "model_calls", "budget_holds",
        "locks", "workers", "spans", "tool_calls", "audit_head", "audit_log", "memory_items",
        "replay_runs", "release_samples", "releases", "provenance", "artifacts", "decisions",
        "attempts", "task_steps", "tasks",
    ):  # fmt: skip
        op.drop_table(table)  # its indexes go with it


def _tasks() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("domain", sa.String(length=64), nullable=False),
        sa.Column("job_kind", sa.String(length=64), nullable=False),
        sa.Column("input_key", sa.String(length=200), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("inputs_hash", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("submitted_by", sa.String(length=120), nullable=False),
        sa.Column("submitted_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("finished_at", _WHEN, nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("artifact_id", sa.String(length=71), nullable=False),
        sa.Column("risk", sa.String(length=16), nullable=False),
        sa.Column("approvals_required", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tasks_state", "tasks", ["state"])
    op.create_index("ix_tasks_kind_key", "tasks", ["job_kind", "input_key"])
    op.create_index("ix_tasks_submitted_at", "tasks", ["submitted_at"])

    op.create_table(
        "task_steps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("finished_at", _WHEN, nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "stage", "attempt", name="uq_step"),
    )

    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=64), nullable=False),
        sa.Column("route", sa.Text(), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("prompt_hash", sa.String(length=71), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("feedback", sa.JSON(), nullable=False),
        sa.Column("recalled", sa.JSON(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("finish_reason", sa.String(length=32), nullable=False),
        sa.Column("cost_usd", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("cost_source", sa.String(length=16), nullable=False),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("generated_at", _WHEN, nullable=False),
        sa.Column("checked_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "number", name="uq_attempt"),
    )
    op.create_index("ix_attempts_generated_at", "attempts", ["generated_at"])

    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("decision", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_decisions_task", "decisions", ["task_id"])


def _artifacts() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(length=71), nullable=False),
        sa.Column("job_kind", sa.String(length=64), nullable=False),
        sa.Column("input_key", sa.String(length=200), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("first_task_id", sa.String(length=40), nullable=False),
        sa.Column("collected_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_artifacts_kind_key", "artifacts", ["job_kind", "input_key"])

    op.create_table(
        "provenance",
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("artifact_id", sa.String(length=71), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("envelope", sa.JSON(), nullable=True),
        sa.Column("signed_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"]),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("task_id"),
    )


def _releases() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("artifact_id", sa.String(length=71), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("released_at", _WHEN, nullable=False),
        sa.Column("rolled_back_at", _WHEN, nullable=True),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("stage_started_at", _WHEN, nullable=True),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("verdicts", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("command", sa.String(length=16), nullable=False),
        sa.Column("command_by", sa.String(length=100), nullable=False),
        sa.Column("detected_at", _WHEN, nullable=True),
        sa.Column("restored_at", _WHEN, nullable=True),
        sa.Column("finished_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"]),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id"),
    )

    op.create_table(
        "release_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("arm", sa.String(length=10), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("latencies", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_release_samples_task", "release_samples", ["task_id", "at"])

    op.create_table(
        "replay_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("from_step", sa.String(length=16), nullable=False),
        sa.Column("candidate", sa.JSON(), nullable=False),
        sa.Column("baseline", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def _memory() -> None:
    op.create_table(
        "memory_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("job_kind", sa.String(length=64), nullable=False),
        sa.Column("input_key", sa.String(length=200), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("embedder", sa.String(length=64), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        sa.Column("expires_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_memory_lookup", "memory_items", ["namespace", "job_kind", "input_key"])
    op.create_index("ix_memory_task_kind", "memory_items", ["task_id", "kind"])
    op.create_index("ix_memory_vectors", "memory_items", ["namespace", "embedder", "id"])
    op.create_index("ix_memory_expires_at", "memory_items", ["expires_at"])
    sqlite = op.get_context().dialect.name == "sqlite"
    for statement in SQLITE_FULL_TEXT if sqlite else POSTGRES_FULL_TEXT:
        op.execute(statement)


def _governance() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("resource", sa.String(length=300), nullable=False),
        sa.Column("decision", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("prev_hash"),
        sa.UniqueConstraint("hash"),
    )
    op.create_index("ix_audit_task", "audit_log", ["task_id"])

    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])

    op.create_table(
        "tool_calls",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("tool", sa.String(length=64), nullable=False),
        sa.Column("capability", sa.String(length=64), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("finished_at", _WHEN, nullable=True),
        sa.Column("compensation", sa.JSON(), nullable=False),
        sa.Column("compensated_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_tool_calls_task", "tool_calls", ["task_id"])


def _observability() -> None:
    op.create_table(
        "spans",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("span_id", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("start_ns", sa.BigInteger(), nullable=False),
        sa.Column("end_ns", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_spans_task", "spans", ["task_id"])
    op.create_index("ix_spans_trace", "spans", ["trace_id"])
    op.create_index("ix_spans_start", "spans", ["start_ns"])


def _scale_out() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("machine", sa.String(length=64), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("domains", sa.JSON(), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("heartbeat_at", _WHEN, nullable=False),
        sa.Column("stopped_at", _WHEN, nullable=True),
        sa.Column("taken_over_by", sa.String(length=80), server_default="", nullable=False),
        sa.Column("taken_over_at", _WHEN, nullable=True),
        sa.Column("recovered", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_workers_heartbeat", "workers", ["heartbeat_at"])

    op.create_table(
        "locks",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )

    op.create_table(
        "budget_holds",
        sa.Column("id", sa.String(length=120), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("domain", sa.String(length=64), nullable=False),
        sa.Column("usd", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_budget_holds_expires", "budget_holds", ["expires_at"])

    op.create_table(
        "model_calls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_model_calls_key_at", "model_calls", ["key", "at"])

    op.create_table(
        "artifact_blobs",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )

    op.create_table(
        "artifact_manifests",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def _api_tokens() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("person", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("last_used_at", _WHEN, nullable=True),
        sa.Column("revoked_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
