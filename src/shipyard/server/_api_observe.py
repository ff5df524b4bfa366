"""``/api/v1/stats``, ``/budgets`` and ``/audit``: the operating figures, spend against the
budgets, and the audit log.

The figures and budgets are kept and rationed (:mod:`shipyard.server._figures`): the same
question within ``[serve] figures_cache_seconds`` gets the same answer without recomputing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from shipyard.observe import parse_window
from shipyard.server._deps import Auditor, Cursor, Limit, Reader, Rt, offset_of, page_of
from shipyard.server._figures import Figures
from shipyard.server._models import AuditPage, Budgets, Stats
from shipyard.server._problems import problems
from shipyard.service import audit_entries, budget_report, figures

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["observability"])


@router.get("/stats", responses=problems(400, 401, 422, 429, 503))
def stats(
    request: Request,
    rt: Rt,
    who: Reader,
    since: Annotated[str, Query(max_length=8, description="24h, 7d, 4w ...")] = "7d",
    job_kind: Annotated[str, Query(max_length=64)] = "",
    domain: Annotated[str, Query(max_length=64)] = "",
) -> Stats:
    """The operating figures for tasks submitted in the window (kept for a while: the same
    question soon after gets the same answer)."""
    window = parse_window(since)

    def compute() -> Stats:
        until = datetime.now(UTC)
        start = until - window
        found = figures(rt, since=start, until=until, job_kind=job_kind, domain=domain)
        return Stats.model_validate(
            {"since": start, "until": until, "figures": [f.to_dict() for f in found]}
        )

    kept: Figures = request.app.state.figures
    return kept.get(("stats", window, job_kind, domain), who.token_id, compute)


@router.get("/budgets", responses=problems(401, 422, 429, 503))
def budgets(
    request: Request, rt: Rt, who: Reader, days: Annotated[int, Query(ge=1, le=366)] = 7
) -> Budgets:
    """Spend against every budget today, and roll-ups per job kind, domain and day."""
    kept: Figures = request.app.state.figures
    return kept.get(
        ("budgets", days),
        who.token_id,
        lambda: Budgets.model_validate(budget_report(rt, days=days).to_dict()),
    )


@router.get("/audit", responses=problems(400, 401, 403, 422, 429, 503))
def audit_log(rt: Rt, _who: Auditor, limit: Limit = 100, cursor: Cursor = "") -> AuditPage:
    """The hash-chained audit log, in order (admin only)."""
    offset = offset_of(cursor)
    entries = audit_entries(rt, offset=offset, limit=limit + 1)
    return page_of(AuditPage, entries, offset, limit)
