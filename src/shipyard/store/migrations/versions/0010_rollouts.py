"""Canary rollouts: a release's stages, verdicts and recovery times; the gateway's samples.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("releases") as table:
        table.add_column(sa.Column("stage", sa.Integer(), nullable=False, server_default="-1"))
        table.add_column(sa.Column("weight", sa.Float(), nullable=False, server_default="0"))
        table.add_column(sa.Column("stage_started_at", _WHEN, nullable=True))
        table.add_column(sa.Column("plan", sa.JSON(), nullable=False, server_default="{}"))
        table.add_column(sa.Column("verdicts", sa.JSON(), nullable=False, server_default="[]"))
        table.add_column(sa.Column("reason", sa.Text(), nullable=False, server_default=""))
        table.add_column(sa.Column("command", sa.String(16), nullable=False, server_default=""))
        table.add_column(sa.Column("command_by", sa.String(100), nullable=False, server_default=""))
        table.add_column(sa.Column("detected_at", _WHEN, nullable=True))
        table.add_column(sa.Column("restored_at", _WHEN, nullable=True))
        table.add_column(sa.Column("finished_at", _WHEN, nullable=True))
    op.create_table(
        "release_samples",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("arm", sa.String(length=10), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("latencies", sa.JSON(), nullable=False),
    )
    op.create_index("ix_release_samples_task", "release_samples", ["task_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_release_samples_task", table_name="release_samples")
    op.drop_table("release_samples")
    with op.batch_alter_table("releases") as table:
        for column in (
            "finished_at", "restored_at", "detected_at", "command_by", "command", "reason",
            "verdicts", "plan", "stage_started_at", "weight", "stage",
        ):  # fmt: skip
            table.drop_column(column)
