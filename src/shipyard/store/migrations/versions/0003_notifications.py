"""Notifications: the CloudEvents outbox and its deliveries.

Revision ID: 0003_notifications
Revises: 0002_idempotency
"""

from __future__ import annotations

revision = "0003_notifications"
down_revision = "0002_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
