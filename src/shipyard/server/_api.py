"""The REST API (``/api/v1``): the CLI's service functions over HTTP, behind tokens and roles.

Every request carries ``Authorization: Bearer <token>`` (``shipyard tokens create``). The
token's role bounds what it may try (``viewer`` reads; ``operator`` also submits, supplies
code and steers releases; ``approver`` also approves and rejects; ``admin`` all of it and the
audit export); then the service function checks the token's person against the Cedar
policies exactly as at the command line (so an approver cannot approve their own
submission here either). Errors are RFC 9457 problem details with a stable ``type`` per
error; every list is paginated with ``limit`` and an opaque ``cursor``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from shipyard import __version__
from shipyard.errors import (
    ConfigError,
    InputError,
    NotFound,
    PolicyDenied,
    ShipyardError,
    StateError,
)
from shipyard.jobs import BatchRow
from shipyard.observe import audit, parse_window
from shipyard.server import _roles as roles
from shipyard.server._tokens import Caller, authenticate
from shipyard.service import (
    Runtime,
    approval_queue,
    approve,
    budget_report,
    figures,
    find_task,
    lineage,
    list_artifacts,
    list_tasks,
    provide,
    reject,
    releases,
    resume,
    steer,
    story_dict,
    submit,
    task_dict,
    task_story,
    task_trace,
)

__all__ = ["PROBLEM", "RateLimiter", "Served", "create_api", "create_app"]

PROBLEM = "urn:shipyard:problem:"
"""Prefix of every problem ``type``; the rest names the error (``not-found``, ...)."""

_STATUS: dict[type[ShipyardError], tuple[int, str]] = {
    InputError: (400, "invalid-input"),
    NotFound: (404, "not-found"),
    PolicyDenied: (403, "policy-denied"),
    StateError: (409, "conflict"),
    ConfigError: (422, "configuration"),
}


def status_of(exc: ShipyardError) -> tuple[int, str]:
    """The HTTP status and problem name of an error from the service functions."""
    for cls, found in _STATUS.items():
        if isinstance(exc, cls):
            return found
    return 503, "unavailable"  # a store, sandbox or provider failure: try again later


class ApiProblem(Exception):
    """An error the API itself raises (authentication, role, rate limit)."""

    def __init__(self, status: int, kind: str, detail: str, hint: str = "") -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail, self.hint = status, kind, detail, hint


def _problem(status: int, kind: str, title: str, detail: str, hint: str = "") -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if hint:
        body["hint"] = hint
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    hint: str = ""


class Page(BaseModel):
    """One page of a list; pass ``next_cursor`` as ``cursor`` for the next (null: the end)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


class Submission(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job_kind: str = Field(description="The job kind, e.g. landing-page")
    inputs: dict[str, Any] = Field(description="The inputs, validated against its schema")


class BatchSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job_kind: str
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=2000)


class Supplied(BaseModel):
    model_config = ConfigDict(extra="forbid")
    files: dict[str, str] = Field(min_length=1, description="file name -> content")


class Submitted(BaseModel):
    batch_id: str
    submitted: list[str]
    rejected: list[dict[str, str]]


class RateLimiter:
    """Requests per minute per token, in this process (a sliding window)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute, self.clock = per_minute, clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait_for(self, key: str) -> float:
        """0 when the request may go now (and counts it); else seconds until it may."""
        now = self.clock()
        with self._lock:
            seen = self._seen.setdefault(key, deque())
            while seen and seen[0] <= now - 60:
                seen.popleft()
            if len(seen) >= self.per_minute:
                return seen[0] + 60 - now
            seen.append(now)
            return 0.0


def _page(items: list[dict[str, Any]], offset: int, limit: int) -> Page:
    """``items`` holds up to limit + 1 rows from ``offset``: the extra one says there is more."""
    more = len(items) > limit
    return Page(
        items=jsonable_encoder(items[:limit]),
        next_cursor=str(offset + limit) if more else None,
    )


def _offset(cursor: str) -> int:
    if not cursor:
        return 0
    if not cursor.isdigit() or len(cursor) > 9:
        raise InputError(
            f"cursor {cursor[:40]!r} is not one this API gave out",
            hint="pass next_cursor as it came",
        )
    return int(cursor)


Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
Cursor = Annotated[str, Query(max_length=12, description="next_cursor of the previous page")]


def create_api(rt: Runtime, *, requests_per_minute: int = 600) -> FastAPI:
    """The API over ``rt`` (mounted by ``shipyard serve`` at ``/api/v1``)."""
    api = FastAPI(
        title="Shipyard",
        version=__version__,
        description="Tasks, approvals, artifacts and their lineage, releases, traces, costs.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        responses={
            400: {"model": Problem},
            401: {"model": Problem},
            403: {"model": Problem},
            404: {"model": Problem},
            409: {"model": Problem},
            422: {"model": Problem},
            429: {"model": Problem},
        },
    )
    limiter = RateLimiter(requests_per_minute)

    @api.exception_handler(ShipyardError)
    async def _shipyard_error(_request: Request, exc: ShipyardError) -> JSONResponse:
        status, kind = status_of(exc)
        return _problem(status, kind, type(exc).__name__, exc.message, exc.hint)

    @api.exception_handler(ApiProblem)
    async def _api_problem(_request: Request, exc: ApiProblem) -> JSONResponse:
        response = _problem(exc.status, exc.kind, exc.kind.replace("-", " "), exc.detail, exc.hint)
        if exc.status == 429:
            response.headers["Retry-After"] = exc.hint.split(" ")[1] if exc.hint else "60"
        return response

    @api.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _problem(
            422,
            "invalid-request",
            "invalid request",
            f"{where}: {first.get('msg', 'invalid')}",
            "see /api/v1/openapi.json for the request's shape",
        )

    def caller(request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiProblem(
                401,
                "unauthenticated",
                "no bearer token",
                "send Authorization: Bearer <token> (`shipyard tokens create NAME --role R`)",
            )
        found = authenticate(rt, token.strip())
        if found is None:
            raise ApiProblem(401, "unauthenticated", "the token is unknown, malformed or revoked")
        wait = limiter.wait_for(found.token_id)
        if wait > 0:
            raise ApiProblem(
                429,
                "rate-limited",
                f"more than {limiter.per_minute} requests in a minute with this token",
                f"retry-after {max(1, int(wait + 0.999))} s",
            )
        return found

    def may(what: str) -> Callable[..., Caller]:
        def check(found: Caller = Depends(caller)) -> Caller:
            if not roles.may(found.role, what):
                raise ApiProblem(
                    403,
                    "forbidden-role",
                    f"a {found.role} token may not {what}",
                    f"roles that may: {', '.join(sorted(roles.MAY[what]))}",
                )
            return found

        return check

    # Dependencies as defaults, not Annotated aliases: a local alias cannot be resolved from
    # the postponed (string) annotations FastAPI reads.
    reader, operator, approver, auditor = (
        Depends(may("read")),
        Depends(may("operate")),
        Depends(may("decide")),
        Depends(may("audit")),
    )

    # -- tasks --------------------------------------------------------------------------

    @api.get("/api/v1/tasks", tags=["tasks"])
    def list_tasks_(
        state: Annotated[list[str], Query(max_length=20)] = [],  # noqa: B006 (FastAPI copies it)
        job_kind: Annotated[str, Query(max_length=64)] = "",
        batch: Annotated[str, Query(max_length=40)] = "",
        limit: Limit = 50,
        cursor: Cursor = "",
        _who: Caller = reader,
    ) -> Page:
        """Tasks, oldest first, filtered by state, job kind or batch."""
        offset = _offset(cursor)
        rows = list_tasks(
            rt, states=state, job_kind=job_kind, batch_id=batch, limit=limit + 1, offset=offset
        )
        return _page([task_dict(t) for t in rows], offset, limit)

    def _submit(who: Caller, job_kind: str, rows: list[BatchRow]) -> Submitted:
        result = submit(rt, rt.jobs.get(job_kind), rows, submitted_by=who.person)
        return Submitted(
            batch_id=result.batch_id,
            submitted=result.submitted,
            rejected=[
                {"where": r.where, "message": r.message, "task_id": r.task_id}
                for r in result.rejected
            ],
        )

    @api.post("/api/v1/tasks", status_code=201, tags=["tasks"])
    def submit_one(body: Submission, who: Caller = operator) -> Submitted:
        """Submit one task; invalid inputs are recorded as an invalid task and listed."""
        return _submit(who, body.job_kind, [BatchRow(where="request", data=body.inputs)])

    @api.post("/api/v1/tasks/batch", status_code=201, tags=["tasks"])
    def submit_batch(body: BatchSubmission, who: Caller = operator) -> Submitted:
        """Submit many rows of one job kind; each bad row is named and the rest go on."""
        rows = [BatchRow(where=f"row {n}", data=row) for n, row in enumerate(body.rows, start=1)]
        return _submit(who, body.job_kind, rows)

    @api.get("/api/v1/tasks/{task_id}", tags=["tasks"])
    def get_task(task_id: str, _who: Caller = reader) -> dict[str, Any]:
        """A task's whole story: steps, attempts with their check reports, decisions, release."""
        return dict(jsonable_encoder(story_dict(task_story(rt, task_id))))

    @api.get("/api/v1/tasks/{task_id}/trace", tags=["tasks"])
    def get_trace(task_id: str, _who: Caller = reader) -> dict[str, Any]:
        """The task's spans (OpenTelemetry), in start order."""
        found = task_trace(rt, task_id)
        task, spans = found.task, found.spans
        return {
            "task_id": task.id,
            "spans": [
                {
                    "trace_id": s.trace_id,
                    "span_id": s.span_id,
                    "parent_id": s.parent_id,
                    "name": s.name,
                    "kind": s.kind,
                    "start_ns": s.start_ns,
                    "end_ns": s.end_ns,
                    "status": s.status,
                    "attributes": s.attributes,
                }
                for s in spans
            ],
        }

    @api.post("/api/v1/tasks/{task_id}/approve", tags=["approvals"])
    def approve_(task_id: str, body: Decision, who: Caller = approver) -> dict[str, Any]:
        """Approve a waiting task (never one's own submission)."""
        return task_dict(approve(rt, task_id, actor=who.person, reason=body.reason))

    @api.post("/api/v1/tasks/{task_id}/reject", tags=["approvals"])
    def reject_(task_id: str, body: Decision, who: Caller = approver) -> dict[str, Any]:
        """Reject a waiting task; the reason is required."""
        return task_dict(reject(rt, task_id, actor=who.person, reason=body.reason))

    @api.post("/api/v1/tasks/{task_id}/provide", tags=["approvals"])
    def provide_(task_id: str, body: Supplied, who: Caller = operator) -> dict[str, Any]:
        """Supply the code for a task waiting for a person's code."""
        return task_dict(provide(rt, task_id, body.files, actor=who.person))

    @api.post("/api/v1/tasks/{task_id}/resume", tags=["tasks"])
    def resume_(task_id: str, who: Caller = operator) -> dict[str, Any]:
        """Resume a task paused by a budget."""
        return task_dict(resume(rt, task_id, actor=who.person))

    @api.get("/api/v1/approvals", tags=["approvals"])
    def approvals(limit: Limit = 50, cursor: Cursor = "", _who: Caller = reader) -> Page:
        """Tasks waiting for a decision, with the approvals they have and need."""
        offset = _offset(cursor)
        waiting = approval_queue(rt)[offset : offset + limit + 1]
        return _page(
            [
                {
                    **task_dict(w.task),
                    "approvals": w.approvers,
                    "approvals_required": w.task.approvals_required,
                    "risk": w.task.risk,
                    "escalated": w.escalation,
                    "waiting_since": w.since,
                }
                for w in waiting
            ],
            offset,
            limit,
        )

    # -- artifacts ----------------------------------------------------------------------

    @api.get("/api/v1/artifacts", tags=["artifacts"])
    def artifacts(
        job_kind: Annotated[str, Query(max_length=64)] = "",
        limit: Limit = 50,
        cursor: Cursor = "",
        _who: Caller = reader,
    ) -> Page:
        """Artifact versions, with the tasks that produced them."""
        offset = _offset(cursor)
        found = list_artifacts(rt, job_kind=job_kind)[offset : offset + limit + 1]
        return _page(
            [
                {
                    "id": row.id,
                    "job_kind": row.job_kind,
                    "input_key": row.input_key,
                    "files": sorted(row.files),
                    "size": row.size,
                    "created_at": row.created_at,
                    "tasks": tasks,
                }
                for row, tasks in found
            ],
            offset,
            limit,
        )

    @api.get("/api/v1/artifacts/{artifact_id}/lineage", tags=["artifacts"])
    def artifact_lineage(artifact_id: str, _who: Caller = reader) -> dict[str, Any]:
        """Where an artifact came from: inputs, prompts, models, checks, approvals, releases,
        and its signed provenance."""
        return dict(jsonable_encoder(lineage(rt, artifact_id)))

    # -- releases -----------------------------------------------------------------------

    @api.get("/api/v1/releases", tags=["releases"])
    def releases_(
        target: Annotated[str, Query(max_length=64)] = "",
        state: Annotated[str, Query(max_length=16)] = "",
        limit: Limit = 50,
        cursor: Cursor = "",
        _who: Caller = reader,
    ) -> Page:
        """Releases, newest first: stage, both arms' numbers, time to recover."""
        offset = _offset(cursor)
        found = releases(rt, target=target, state=state, limit=offset + limit + 1)[offset:]
        return _page(found, offset, limit)

    @api.post("/api/v1/releases/{task_id}/{command}", tags=["releases"])
    def steer_(
        task_id: str,
        command: Literal["pause", "resume", "promote", "rollback"],
        who: Caller = operator,
    ) -> dict[str, Any]:
        """Pause, resume, promote or roll back a task's release."""
        return dict(
            jsonable_encoder(steer(rt, find_task(rt, task_id).id, command, actor=who.person))
        )

    # -- operating figures, budgets, audit ----------------------------------------------

    @api.get("/api/v1/stats", tags=["observability"])
    def stats(
        since: Annotated[str, Query(max_length=8, description="24h, 7d, 4w ...")] = "7d",
        job_kind: Annotated[str, Query(max_length=64)] = "",
        domain: Annotated[str, Query(max_length=64)] = "",
        _who: Caller = reader,
    ) -> dict[str, Any]:
        """The operating figures for tasks submitted in the window."""
        until = datetime.now(UTC)
        start = until - parse_window(since)
        found = figures(rt, since=start, until=until, job_kind=job_kind, domain=domain)
        return {
            "since": start.isoformat(),
            "until": until.isoformat(),
            "figures": jsonable_encoder([f.to_dict() for f in found]),
        }

    @api.get("/api/v1/budgets", tags=["observability"])
    def budgets(
        days: Annotated[int, Query(ge=1, le=366)] = 7, _who: Caller = reader
    ) -> dict[str, Any]:
        """Spend against every budget today, and roll-ups per job kind, domain and day."""
        return dict(jsonable_encoder(budget_report(rt, days=days).to_dict()))

    @api.get("/api/v1/audit", tags=["observability"])
    def audit_log(limit: Limit = 100, cursor: Cursor = "", _who: Caller = auditor) -> Page:
        """The hash-chained audit log, in order (admin only)."""
        offset = _offset(cursor)
        with rt.sessions() as session:
            rows = [
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
                for row in audit.page(session, offset=offset, limit=limit + 1)
            ]
        return _page(rows, offset, limit)

    return api


def create_app(rt: Runtime, *, requests_per_minute: int = 600) -> FastAPI:
    """The API at ``/api/v1`` and the console at ``/console``, over ``rt``."""
    from shipyard.server._console import Sessions, console_router

    app = create_api(rt, requests_per_minute=requests_per_minute)
    app.include_router(console_router(rt, Sessions()))
    return app


_APP_PATHS = ("/api/", "/console")


class Served:
    """What ``shipyard serve`` runs: ``/api/`` and ``/console`` to the app, everything else to
    the gateway.

    The gateway keeps the lifespan (its reconciler and its announce file); the API needs none.
    """

    def __init__(self, api: FastAPI, gateway: Any) -> None:
        self.api, self.gateway = api, gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"].startswith(_APP_PATHS):
            await self.api(scope, receive, send)
        else:
            await self.gateway(scope, receive, send)
