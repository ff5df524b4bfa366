"""Incidents: what a monitor saw go wrong on a live path, and how it ended.

An incident is opened by a monitor's round (one open per target, path and cause, under the
target's ``incidents:`` lock), carries the verdict that showed the anomaly, and is
resolved by the monitor (the path recovered, or its rollback put traffic back on the
version before) or by a person (an alert someone dealt with). Both are audited; the time to
recover is ``resolved_at - detected_at``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.orchestrator import _govern as govern
from shipyard.release import Finding, Health
from shipyard.store import IncidentRow

__all__ = ["close_incident", "may_open", "open_incident", "open_incidents"]


def open_incidents(session: Session, target: str, path: str) -> list[IncidentRow]:
    """The path's open incidents, oldest first."""
    return list(
        session.scalars(
            select(IncidentRow)
            .where(
                IncidentRow.target == target,
                IncidentRow.path == path,
                IncidentRow.state == "open",
            )
            .order_by(IncidentRow.id)
        ).all()
    )


def may_open(
    session: Session,
    *,
    target: str,
    path: str,
    task_id: str,
    finding: Finding,
    recovered: dict[str, str],
) -> bool:
    """Whether ``finding`` opens an incident: none of this path and cause is open; and if a
    person closed the last one of this release, the path recovered on that cause since
    (``recovered``: cause -> when a round last found it healthy). A person's resolution
    holds while the same release keeps failing the same way."""
    last = session.scalar(
        select(IncidentRow)
        .where(
            IncidentRow.target == target,
            IncidentRow.path == path,
            IncidentRow.cause == finding.cause,
        )
        .order_by(IncidentRow.id.desc())
        .limit(1)
    )
    if last is None:
        return True
    if last.state == "open":
        return False
    if last.task_id != task_id or last.resolved_by == "monitor" or last.resolved_at is None:
        return True
    healthy_since = recovered.get(finding.cause)
    return healthy_since is not None and datetime.fromisoformat(healthy_since) > last.resolved_at


def open_incident(
    session: Session,
    *,
    target: str,
    path: str,
    task_id: str,
    finding: Finding,
    health: Health,
    action: str,
    window_start: datetime,
    detected_at: datetime,
) -> IncidentRow:
    """Record a new incident and audit it (in the caller's transaction)."""
    incident = IncidentRow(
        target=target,
        path=path,
        task_id=task_id,
        cause=finding.cause,
        state="open",
        action=action,
        reason=finding.reason,
        evidence=health.to_dict(),
        window_start=window_start,
        detected_at=detected_at,
        resolved_by="",
        resolution="",
    )
    session.add(incident)
    session.flush()
    govern.record(
        session,
        actor=f"monitor {target}",
        action="incident",
        subject=f"target {target}",
        decision="opened",
        reason=finding.reason,
        task_id=task_id,
        detail={"incident": incident.id, "path": path, "cause": finding.cause, "action": action},
    )
    return incident


def close_incident(
    session: Session,
    incident: IncidentRow,
    *,
    by: str,
    actor: str,
    at: datetime,
    note: str,
) -> None:
    """Resolve an open incident (in the caller's transaction) and audit it. ``by`` is
    ``monitor`` or the person; ``actor`` who the audit entry names."""
    incident.state, incident.resolved_at = "resolved", at
    incident.resolved_by, incident.resolution = by, note
    govern.record(
        session,
        actor=actor,
        action="incident",
        subject=f"target {incident.target}",
        decision="resolved",
        reason=note,
        task_id=incident.task_id,
        detail={
            "incident": incident.id,
            "path": incident.path,
            "cause": incident.cause,
            "recovered_s": round((at - incident.detected_at).total_seconds(), 3),
        },
    )
