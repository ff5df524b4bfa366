"""``/api/v1/releases``: releases with their rollouts, and a person steering one."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from shipyard.model import ReleaseState
from shipyard.server._deps import Cursor, Limit, Operator, Reader, Rt, offset_of, page_of
from shipyard.server._models import ReleasePage, Steered
from shipyard.server._problems import problems
from shipyard.service import find_task, releases, steer

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["releases"])


@router.get("/releases", responses=problems(400, 401, 422, 429, 503))
def releases_(
    rt: Rt,
    _who: Reader,
    target: Annotated[str, Query(max_length=64)] = "",
    state: ReleaseState | None = None,
    limit: Limit = 50,
    cursor: Cursor = "",
) -> ReleasePage:
    """Releases, newest first: stage, both arms' numbers, time to recover."""
    offset = offset_of(cursor)
    found = releases(rt, target=target, state=state or "", limit=offset + limit + 1)[offset:]
    return page_of(ReleasePage, found, offset, limit)


@router.post(
    "/releases/{task_id}/{command}",
    response_model_exclude_none=True,
    responses=problems(400, 401, 403, 404, 409, 422, 429, 503),
)
def steer_(
    rt: Rt,
    task_id: str,
    command: Literal["pause", "resume", "promote", "rollback"],
    who: Operator,
) -> Steered:
    """Pause, resume, promote or roll back a task's release."""
    done = steer(rt, find_task(rt, task_id).id, command, actor=who.person)
    return Steered.model_validate(done)
