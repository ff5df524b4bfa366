"""Queries the server's faces needed that the rest of the service layer did not have yet.

Kept in a file of their own so they could be added without editing the service layer's other
modules; each belongs beside its kin (the audit log's reads with the other queries) and in
``shipyard.service.__all__`` when the service layer next moves.
"""

from __future__ import annotations

from typing import Any

from shipyard.observe import audit
from shipyard.orchestrator import Runtime

__all__ = ["audit_entries"]


def audit_entries(rt: Runtime, *, offset: int, limit: int) -> list[dict[str, Any]]:
    """Entries of the hash-chained audit log in order, ``limit`` of them from the
    ``offset``-th, as plain data (``GET /api/v1/audit``)."""
    with rt.sessions() as session:
        return [
            {
                "seq": row.seq,
                "at": row.at,
                "actor": row.actor,
                "action": row.action,
                "resource": row.resource,
                "decision": row.decision,
                "reason": row.reason,
                "task_id": row.task_id,
                "detail": row.detail,
                "prev_hash": row.prev_hash,
                "hash": row.hash,
            }
            for row in audit.page(session, offset=offset, limit=limit)
        ]
