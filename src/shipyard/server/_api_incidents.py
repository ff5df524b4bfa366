"""``/api/v1/incidents``: what the monitors found on live paths, and a person closing one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from shipyard.server._deps import Cursor, Limit, Operator, Reader, Rt, offset_of, page_of
from shipyard.server._models import Incident, IncidentPage, Resolution
from shipyard.server._problems import problems
from shipyard.service import incidents, resolve_incident

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["incidents"])


@router.get("/incidents", responses=problems(400, 401, 422, 429, 503))
def incidents_(
    rt: Rt,
    _who: Reader,
    state: Literal["open", "resolved"] | None = None,
    target: Annotated[str, Query(max_length=64)] = "",
    limit: Limit = 50,
    cursor: Cursor = "",
) -> IncidentPage:
    """Incidents the monitors opened, newest first, with their time to recover."""
    offset = offset_of(cursor)
    found = incidents(rt, state=state or "", target=target, limit=limit + 1, offset=offset)
    return page_of(IncidentPage, found, offset, limit)


@router.post(
    "/incidents/{incident_id}/resolve", responses=problems(400, 401, 403, 404, 409, 422, 429, 503)
)
def resolve_(
    rt: Rt,
    incident_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    body: Resolution,
    who: Operator,
) -> Incident:
    """Close an open incident (an alert someone dealt with), saying what was done."""
    return Incident.model_validate(
        resolve_incident(rt, incident_id, actor=who.person, note=body.note)
    )
