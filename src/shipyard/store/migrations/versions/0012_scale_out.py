"""Scale-out: the worker registry, row locks, budget holds, model-call windows, and artifact
contents in the database.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=80), primary_key=True),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("machine", sa.String(length=64), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("domains", sa.JSON(), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("taken_over_by", sa.String(length=80), nullable=False, server_default=""),
        sa.Column("taken_over_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recovered", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_workers_heartbeat", "workers", ["heartbeat_at"])
    op.create_table(
        "locks",
        sa.Column("name", sa.String(length=120), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_table(
        "budget_holds",
        sa.Column("id", sa.String(length=120), primary_key=True),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("domain", sa.String(length=64), nullable=False),
        sa.Column("usd", sa.Numeric(14, 6), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_budget_holds_expires", "budget_holds", ["expires_at"])
    op.create_table(
        "model_calls",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_model_calls_key_at", "model_calls", ["key", "at"])
    op.create_table(
        "artifact_blobs",
        sa.Column("digest", sa.String(length=64), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "artifact_manifests",
        sa.Column("id", sa.String(length=80), primary_key=True),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("artifact_manifests")
    op.drop_table("artifact_blobs")
    op.drop_index("ix_model_calls_key_at", table_name="model_calls")
    op.drop_table("model_calls")
    op.drop_index("ix_budget_holds_expires", table_name="budget_holds")
    op.drop_table("budget_holds")
    op.drop_table("locks")
    op.drop_index("ix_workers_heartbeat", table_name="workers")
    op.drop_table("workers")
