"""Provenance carries its signed in-toto statement (a DSSE envelope); artifacts record when
their files were collected.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("provenance") as batch:
        batch.add_column(sa.Column("envelope", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("artifacts") as batch:
        batch.add_column(sa.Column("collected_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("collected_at")
    with op.batch_alter_table("provenance") as batch:
        batch.drop_column("signed_at")
        batch.drop_column("envelope")
