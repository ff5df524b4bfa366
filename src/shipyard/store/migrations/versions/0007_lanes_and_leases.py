"""No lock shared by every worker: audit lanes and budget leases.

- ``audit_log.lane``, ``lane_seq``, ``prev_seq``, ``anchors``, ``format``: the audit log
  becomes a few hash chains (lanes) appended to side by side. The single chain written so
  far becomes lane 1 as it is: its entries keep their hashes (``format`` 1: hashed over their
  own fields, as before), ``lane_seq`` is their sequence number, ``prev_seq`` the one before.
  New entries are ``format`` 2. ``(lane, lane_seq)`` is unique.
- ``audit_head.entries``: how many entries a lane holds (the single chain's head row, id 1,
  becomes lane 1's head: its ``seq`` already counts them).
- On PostgreSQL, two sequences: ``audit_seq`` numbers entries across lanes (it starts after
  the newest entry) and ``audit_lanes`` numbers new lanes (from 2). SQLite appends to lane 1
  only, under its one write lock, so it needs neither.
- ``budget_leases``: workers' shares of the day budgets; ``attempts.budget_lease``: whose
  leases an attempt's call was held under; ``budget_holds.lease``: the same for a hold that
  counts against its task's budget only.

Added in place with server defaults (no table rebuild on SQLite).

Revision ID: 0007_lanes_and_leases
Revises: 0006_repo_changes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_lanes_and_leases"
down_revision = "0006_repo_changes"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)
"""``UtcDateTime`` in the models: a timezone-aware timestamp on both databases."""


def upgrade() -> None:
    _audit_lanes()
    _budget_leases()


def _audit_lanes() -> None:
    for name, default in (("lane", "1"), ("lane_seq", "0"), ("prev_seq", "0"), ("format", "1")):
        op.add_column(
            "audit_log",
            sa.Column(name, sa.Integer(), nullable=False, server_default=default),
        )
    op.add_column("audit_log", sa.Column("anchors", sa.JSON(), nullable=True))
    op.execute("UPDATE audit_log SET lane_seq = seq, prev_seq = seq - 1")
    op.create_index("ix_audit_lane", "audit_log", ["lane", "lane_seq"], unique=True)
    op.add_column(
        "audit_head",
        sa.Column("entries", sa.Integer(), nullable=False, server_default="0"),
    )
    op.execute("UPDATE audit_head SET entries = seq")
    if op.get_context().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE audit_seq")
        op.execute(
            "SELECT setval('audit_seq', (SELECT coalesce(max(seq), 0) + 1 FROM audit_log), false)"
        )
        op.execute("CREATE SEQUENCE audit_lanes START WITH 2")


def _budget_leases() -> None:
    op.create_table(
        "budget_leases",
        sa.Column("id", sa.String(length=240), nullable=False),
        sa.Column("owner", sa.String(length=80), nullable=False),
        sa.Column("scope", sa.String(length=120), nullable=False),
        sa.Column("domain", sa.String(length=64), nullable=False),
        sa.Column("day", _WHEN, nullable=False),
        sa.Column("usd", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_budget_leases_scope", "budget_leases", ["scope", "day"])
    op.add_column(
        "attempts",
        sa.Column("budget_lease", sa.String(length=80), nullable=False, server_default=""),
    )
    op.create_index("ix_attempts_budget_lease", "attempts", ["budget_lease"])
    op.add_column(
        "budget_holds",
        sa.Column("lease", sa.String(length=80), nullable=False, server_default=""),
    )


def downgrade() -> None:  # in place (SQLite 3.35+), no rebuild
    op.execute("ALTER TABLE budget_holds DROP COLUMN lease")
    op.drop_index("ix_attempts_budget_lease", table_name="attempts")
    op.execute("ALTER TABLE attempts DROP COLUMN budget_lease")
    op.drop_index("ix_budget_leases_scope", table_name="budget_leases")
    op.drop_table("budget_leases")
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE IF EXISTS audit_lanes")
        op.execute("DROP SEQUENCE IF EXISTS audit_seq")
    op.execute("ALTER TABLE audit_head DROP COLUMN entries")
    op.drop_index("ix_audit_lane", table_name="audit_log")
    for name in ("anchors", "format", "prev_seq", "lane_seq", "lane"):
        op.execute(f"ALTER TABLE audit_log DROP COLUMN {name}")
