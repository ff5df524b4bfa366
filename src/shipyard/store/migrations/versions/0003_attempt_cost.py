"""Attempts record what their model call cost, and where the price came from.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(
            sa.Column("cost_usd", sa.Numeric(14, 6), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("cost_source", sa.String(length=16), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("cost_source")
        batch.drop_column("cost_usd")
