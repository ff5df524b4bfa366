"""Notifications: the CloudEvents outbox and its deliveries.

- ``notify_events``: one row per event, its id derived from the recorder's key (unique), so
  a step that runs twice records one event; ``routed_at`` says a sending worker made its
  deliveries.
- ``notify_deliveries``: one event on its way to one ``[notify.NAME]`` endpoint (unique per
  pair), with its attempts, next attempt, lease and last answer; removed with its event.
- ``notify_counts``: outcomes per endpoint, the Prometheus counter's source (retention
  removes delivered events, never these counts).

New tables only: nothing existing changes.

Revision ID: 0003_notifications
Revises: 0002_idempotency
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_notifications"
down_revision = "0002_idempotency"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)
"""``UtcDateTime`` in the models: a timezone-aware timestamp on both databases."""


def upgrade() -> None:
    op.create_table(
        "notify_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("time", _WHEN, nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("routed_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_notify_events_routed", "notify_events", ["routed_at"])
    op.create_index("ix_notify_events_time", "notify_events", ["time"])

    op.create_table(
        "notify_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _WHEN, nullable=False),
        sa.Column("leased_until", _WHEN, nullable=True),
        sa.Column("lease_owner", sa.String(length=80), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("last_attempt_at", _WHEN, nullable=True),
        sa.Column("delivered_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["notify_events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "endpoint", name="uq_notify_delivery"),
    )
    op.create_index(
        "ix_notify_deliveries_due",
        "notify_deliveries",
        ["state", "endpoint", "next_attempt_at"],
    )

    op.create_table(
        "notify_counts",
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("endpoint", "outcome"),
    )


def downgrade() -> None:
    op.drop_table("notify_counts")
    op.drop_index("ix_notify_deliveries_due", table_name="notify_deliveries")
    op.drop_table("notify_deliveries")
    op.drop_index("ix_notify_events_time", table_name="notify_events")
    op.drop_index("ix_notify_events_routed", table_name="notify_events")
    op.drop_table("notify_events")
