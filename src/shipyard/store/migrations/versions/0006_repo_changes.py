"""Repository changes: what an attempt at a change was built from and what it did.

- ``attempts.change``: for a repository change, the context the generator was sent (the
  repository map's excerpt and the files chosen, with their sizes), the change's per-file
  summary (paths, status, lines added and removed), and the facts its verification found
  (test counts, new dependencies). NULL for the other job kinds.

Added in place (no table rebuild on SQLite).

Revision ID: 0006_repo_changes
Revises: 0005_people
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_repo_changes"
down_revision = "0005_people"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("change", sa.JSON(), nullable=True))


def downgrade() -> None:  # in place (SQLite 3.35+), no rebuild
    op.drop_column("attempts", "change")
