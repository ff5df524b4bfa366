"""Watching what is live, for people: the incidents monitors opened, a person closing one,
and what each monitor is watching."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from shipyard.errors import InputError, NotFound, StateError
from shipyard.orchestrator import Runtime, close_incident
from shipyard.store import IncidentRow, MonitorRow, transaction

__all__ = ["incident_dict", "incidents", "monitors", "resolve_incident"]

INCIDENT_STATES = ("open", "resolved")


def incident_dict(row: IncidentRow) -> dict[str, Any]:
    """An incident as every face shows it (``time_to_recover_s`` once it is resolved)."""
    recovered = (
        round((row.resolved_at - row.detected_at).total_seconds(), 3)
        if row.resolved_at is not None
        else None
    )
    return {
        "id": row.id,
        "target": row.target,
        "path": row.path,
        "task": row.task_id,
        "cause": row.cause,
        "state": row.state,
        "action": row.action,
        "reason": row.reason,
        "evidence": dict(row.evidence or {}),
        "detected_at": row.detected_at,
        "resolved_at": row.resolved_at,
        "resolved_by": row.resolved_by,
        "resolution": row.resolution,
        "time_to_recover_s": recovered,
    }


def incidents(
    rt: Runtime, *, state: str = "", target: str = "", limit: int = 50, offset: int = 0
) -> list[dict[str, Any]]:
    """Incidents, newest first; only ``open`` or ``resolved`` ones, or one target's."""
    if state and state not in INCIDENT_STATES:
        raise InputError(
            f"unknown incident state {state!r}", hint=f"one of: {', '.join(INCIDENT_STATES)}"
        )
    query = select(IncidentRow).order_by(IncidentRow.id.desc()).limit(limit).offset(offset)
    if state:
        query = query.where(IncidentRow.state == state)
    if target:
        query = query.where(IncidentRow.target == target)
    with rt.sessions() as session:
        return [incident_dict(row) for row in session.scalars(query).all()]


def resolve_incident(rt: Runtime, incident_id: int, *, actor: str, note: str) -> dict[str, Any]:
    """A person closes an open incident (an alert they dealt with), saying why.

    The monitor does not open another for the same path and cause while the same release
    keeps failing the same way; once the path has recovered on it, a new failure does.
    """
    if not note.strip():
        raise InputError(
            "resolving an incident needs a note saying what was done",
            hint="shipyard incident resolve ID --as NAME --note 'restarted the upstream'",
        )
    with transaction(rt.sessions) as session:
        row = session.get(IncidentRow, incident_id)
        if row is None:
            raise NotFound(f"no incident #{incident_id}", hint="`shipyard incidents` lists them")
        if row.state != "open":
            raise StateError(
                f"incident #{incident_id} was resolved already, by {row.resolved_by} "
                f"at {row.resolved_at:%Y-%m-%d %H:%M:%S}",
                hint="`shipyard incidents --open` lists the open ones",
            )
        close_incident(session, row, by=actor, actor=actor, at=datetime.now(UTC), note=note.strip())
        return incident_dict(row)


def monitors(rt: Runtime) -> list[dict[str, Any]]:
    """Each target's monitor: watching or stopped, its last round, and each live path's
    latest verdict; a watched target that has never had anything live has none yet."""
    with rt.sessions() as session:
        rows = session.scalars(select(MonitorRow).order_by(MonitorRow.target)).all()
        found = []
        for row in rows:
            settings = rt.project.settings.targets.get(row.target)
            watching = settings.watching() if settings is not None else None
            found.append(
                {
                    "target": row.target,
                    "state": row.state,
                    "generation": row.generation,
                    "on_anomaly": watching.on_anomaly if watching else None,
                    "interval_seconds": watching.interval_seconds if watching else None,
                    "started_at": row.started_at,
                    "checked_at": row.checked_at,
                    "stopped_at": row.stopped_at,
                    "note": row.note,
                    "paths": dict(row.paths or {}),
                }
            )
    return found
