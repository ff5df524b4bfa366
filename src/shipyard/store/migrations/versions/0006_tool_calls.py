"""Tool calls journalled by idempotency key, with their compensations.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tool_calls",
        sa.Column("key", sa.String(length=200), primary_key=True),
        sa.Column(
            "task_id",
            sa.String(length=40),
            sa.ForeignKey("tasks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("tool", sa.String(length=64), nullable=False),
        sa.Column("capability", sa.String(length=64), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("compensation", sa.JSON(), nullable=False),
        sa.Column("compensated_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_tool_calls_task", "tool_calls", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_tool_calls_task", table_name="tool_calls")
    op.drop_table("tool_calls")
