"""Attempts record the tier that served them and the router's reasons; spend is indexed by day.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("tier", sa.String(length=64), nullable=False, server_default=""))
        batch.add_column(sa.Column("route", sa.Text(), nullable=False, server_default=""))
        batch.create_index("ix_attempts_generated_at", ["generated_at"])


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_index("ix_attempts_generated_at")
        batch.drop_column("route")
        batch.drop_column("tier")
