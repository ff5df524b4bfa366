"""``/api/v1/artifacts``: artifact versions and their lineage."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from shipyard.server._deps import Cursor, Limit, Reader, Rt, offset_of, page_of
from shipyard.server._models import ArtifactPage, Lineage
from shipyard.server._problems import problems
from shipyard.service import lineage, list_artifacts

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["artifacts"])


@router.get("/artifacts", responses=problems(400, 401, 422, 429, 503))
def artifacts(
    rt: Rt,
    _who: Reader,
    job_kind: Annotated[str, Query(max_length=64)] = "",
    limit: Limit = 50,
    cursor: Cursor = "",
) -> ArtifactPage:
    """Artifact versions, newest first, with the targets each is live on."""
    offset = offset_of(cursor)
    found = list_artifacts(rt, job_kind=job_kind)[offset : offset + limit + 1]
    items = [
        {
            "id": row.id,
            "job_kind": row.job_kind,
            "input_key": row.input_key,
            "files": sorted(row.files),
            "size": row.size,
            "created_at": row.created_at,
            "tasks": live_on,
        }
        for row, live_on in found
    ]
    return page_of(ArtifactPage, items, offset, limit)


@router.get("/artifacts/{artifact_id}/lineage", responses=problems(400, 401, 404, 429, 503))
def artifact_lineage(rt: Rt, artifact_id: str, _who: Reader) -> Lineage:
    """Where an artifact came from: inputs, prompts, models, checks, approvals, releases,
    and its signed provenance. A task id names the artifact its output became."""
    return Lineage.model_validate(lineage(rt, artifact_id))
