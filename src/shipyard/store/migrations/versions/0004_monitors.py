"""Monitors: live targets' baselines and incidents.

Revision ID: 0004_monitors
Revises: 0003_notifications
"""

from __future__ import annotations

revision = "0004_monitors"
down_revision = "0003_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
