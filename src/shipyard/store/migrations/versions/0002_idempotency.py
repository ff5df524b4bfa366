"""Idempotent submission: a task's business key and generation; clients' idempotency keys.

- ``tasks.business_key`` (unique) names what a task is about for the world outside
  (``KIND:INPUT_KEY:DIGEST``, ``~N`` from its second generation on); effects' idempotency
  keys derive from it. A task already recorded keeps its id as its business key, so the
  effect keys of tasks under way (``TASK:POSITION:TOOL``) stay what they were.
- ``tasks.generation``: 1 for existing tasks.
- ``idempotency_keys``: what a submission under an API client's ``Idempotency-Key``
  answered, per person, written with the submission's tasks.

Both columns are added in place with a server default (no table rebuild on SQLite, whose
``DROP TABLE`` would cascade to every task's steps and attempts). The unique index leaves
out the empty key, which a process of the previous release writes when it submits during a
rolling upgrade (its tasks' effects are keyed by their ids, as before).

Revision ID: 0002_idempotency
Revises: 0001_baseline
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_idempotency"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "tasks",
        sa.Column("business_key", sa.String(length=160), nullable=False, server_default=""),
    )
    op.add_column(
        "tasks", sa.Column("generation", sa.Integer(), nullable=False, server_default="1")
    )
    op.execute("UPDATE tasks SET business_key = id")
    op.create_index(
        "uq_tasks_business_key",
        "tasks",
        ["business_key"],
        unique=True,
        postgresql_where=sa.text("business_key <> ''"),
        sqlite_where=sa.text("business_key <> ''"),
    )

    op.create_table(
        "idempotency_keys",
        sa.Column("person", sa.String(length=120), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("person", "key"),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_index("uq_tasks_business_key", table_name="tasks")
    for column in ("generation", "business_key"):  # in place (SQLite 3.35+), no rebuild
        op.execute(f"ALTER TABLE tasks DROP COLUMN {column}")
