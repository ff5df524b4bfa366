"""The audit log for people: verify its hash chain, page through it, export it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

from shipyard.observe import AuditCheck, audit
from shipyard.orchestrator import Runtime

__all__ = ["AuditVerdict", "audit_entries", "export_audit", "verify_audit"]


@dataclass(frozen=True, kw_only=True)
class AuditVerdict:
    check: AuditCheck
    head: str
    """The hash of the newest entry."""


def verify_audit(rt: Runtime) -> AuditVerdict:
    """Recompute the hash chain from the first entry to the head."""
    with rt.sessions() as session:
        check = audit.verify(session)
        head = session.execute(audit.head()).one()
    return AuditVerdict(check=check, head=str(head.hash))


def audit_entries(rt: Runtime, *, offset: int, limit: int) -> list[dict[str, Any]]:
    """``limit`` entries of the log in order from the ``offset``-th, as plain data."""
    with rt.sessions() as session:
        return [audit.entry(row) for row in audit.page(session, offset=offset, limit=limit)]


def export_audit(rt: Runtime, out: TextIO, *, task_id: str = "") -> int:
    """Write the log (or one task's entries) as JSON Lines; how many entries."""
    with rt.sessions() as session:
        return audit.export(session, out, task_id=task_id)
