"""Monitors: the watch over live targets, and the incidents it opens.

- ``monitors``: one row per watched target: the generation its durable workflow's id
  derives from, whether it is watching, and each live path's probe results and last verdict.
- ``incidents``: an anomaly on a live path (its cause, the evidence, what was done), open
  until the path recovers, the monitor's rollback restores traffic, or a person closes it.
  A partial unique index keeps one open incident per target, path and cause.

New tables only: nothing existing changes.

Revision ID: 0004_monitors
Revises: 0003_notifications
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_monitors"
down_revision = "0003_notifications"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)
"""``UtcDateTime`` in the models: a timezone-aware timestamp on both databases."""


def upgrade() -> None:
    op.create_table(
        "monitors",
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("checked_at", _WHEN, nullable=True),
        sa.Column("stopped_at", _WHEN, nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("paths", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("target"),
    )

    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("cause", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("window_start", _WHEN, nullable=False),
        sa.Column("detected_at", _WHEN, nullable=False),
        sa.Column("resolved_at", _WHEN, nullable=True),
        sa.Column("resolved_by", sa.String(length=120), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "uq_incidents_open",
        "incidents",
        ["target", "path", "cause"],
        unique=True,
        sqlite_where=sa.text("state = 'open'"),
        postgresql_where=sa.text("state = 'open'"),
    )
    op.create_index("ix_incidents_detected", "incidents", ["detected_at"])


def downgrade() -> None:
    op.drop_index("ix_incidents_detected", table_name="incidents")
    op.drop_index("uq_incidents_open", table_name="incidents")
    op.drop_table("incidents")
    op.drop_table("monitors")
