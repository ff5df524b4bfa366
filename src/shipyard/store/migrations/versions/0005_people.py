"""People: who decided, and for whom.

Revision ID: 0005_people
Revises: 0004_monitors
"""

from __future__ import annotations

revision = "0005_people"
down_revision = "0004_monitors"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
