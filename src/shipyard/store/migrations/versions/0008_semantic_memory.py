"""Semantic memory: items carry tags, an embedding (with its embedder) and an expiry; words are
searchable through FTS5 (SQLite) or a tsvector column (PostgreSQL).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE memory_fts USING fts5("
    "text, content='memory_items', content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER memory_fts_insert AFTER INSERT ON memory_items BEGIN "
    "INSERT INTO memory_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER memory_fts_delete AFTER DELETE ON memory_items BEGIN "
    "INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER memory_fts_update AFTER UPDATE OF text ON memory_items BEGIN "
    "INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO memory_fts(rowid, text) VALUES (new.id, new.text); END",
    "INSERT INTO memory_fts(memory_fts) VALUES ('rebuild')",
]

_POSTGRES_FTS = [
    "ALTER TABLE memory_items ADD COLUMN text_tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED",
    "CREATE INDEX ix_memory_text_tsv ON memory_items USING gin (text_tsv)",
]


def upgrade() -> None:
    with op.batch_alter_table("memory_items") as batch:
        batch.drop_constraint("uq_memory_task_kind", type_="unique")
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(
            sa.Column("embedder", sa.String(length=64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("dim", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("vector", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_memory_task_kind", ["task_id", "kind"])
        batch.create_index("ix_memory_vectors", ["namespace", "embedder", "id"])
        batch.create_index("ix_memory_expires_at", ["expires_at"])
    statements = _SQLITE_FTS if op.get_context().dialect.name == "sqlite" else _POSTGRES_FTS
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for name in ("memory_fts_insert", "memory_fts_delete", "memory_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS memory_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_memory_text_tsv")
        op.execute("ALTER TABLE memory_items DROP COLUMN IF EXISTS text_tsv")
    with op.batch_alter_table("memory_items") as batch:
        batch.drop_index("ix_memory_expires_at")
        batch.drop_index("ix_memory_vectors")
        batch.drop_index("ix_memory_task_kind")
        batch.drop_column("expires_at")
        batch.drop_column("vector")
        batch.drop_column("dim")
        batch.drop_column("embedder")
        batch.drop_column("tags")
        batch.create_unique_constraint("uq_memory_task_kind", ["task_id", "kind"])
