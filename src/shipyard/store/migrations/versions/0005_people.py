"""People: who decided, and for whom.

- ``decisions.principal``: the authenticated person behind a decision (``actor`` stays the
  name it was made for; the two differ only when an ``act_for`` policy let one person act
  for another). Approvals count distinct principals. Existing decisions get their actor.
- ``tasks.submitted_principal``: the authenticated person who submitted the task (the
  submitter never approves it, under any name). Existing tasks get their ``submitted_by``.

Both columns are added in place with a server default (no table rebuild on SQLite, whose
``DROP TABLE`` would cascade to every task's steps and attempts).

Revision ID: 0005_people
Revises: 0004_monitors
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_people"
down_revision = "0004_monitors"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "decisions",
        sa.Column("principal", sa.String(length=120), nullable=False, server_default=""),
    )
    op.execute("UPDATE decisions SET principal = actor")
    op.add_column(
        "tasks",
        sa.Column("submitted_principal", sa.String(length=120), nullable=False, server_default=""),
    )
    op.execute("UPDATE tasks SET submitted_principal = submitted_by")


def downgrade() -> None:  # in place (SQLite 3.35+), no rebuild
    op.execute("ALTER TABLE tasks DROP COLUMN submitted_principal")
    op.execute("ALTER TABLE decisions DROP COLUMN principal")
