"""What every API route depends on: the Runtime, the caller behind the bearer token (with
its rate limit and role), and pages of lists.

The app keeps the Runtime and the rate limiter on ``app.state`` (``create_api`` puts them
there); routes ask for them through FastAPI dependencies, so the routers are plain module
objects and any app that carries a Runtime can include them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Final, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from shipyard.errors import InputError
from shipyard.server._problems import ApiProblem
from shipyard.server._throttle import RateLimiter, retry_seconds
from shipyard.service import ROLE_MAY, Caller, Runtime, authenticate, role_may

__all__ = [
    "Approver",
    "Auditor",
    "Cursor",
    "Limit",
    "Operator",
    "RateLimiter",
    "Reader",
    "Rt",
    "bearer",
    "caller",
    "offset_of",
    "page_of",
    "runtime",
]


def runtime(request: Request) -> Runtime:
    """The Runtime the app serves (``app.state.runtime``)."""
    rt: Runtime = request.app.state.runtime
    return rt


Rt = Annotated[Runtime, Depends(runtime)]


bearer: Final = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="shy_<id>_<secret>",
    description="An API token: `shipyard tokens create NAME --role ROLE` (shown once). Its "
    "role bounds what it may try; its person is checked against the project's policies.",
    auto_error=False,  # a missing token is answered with a problem document, below
)


def caller(
    request: Request,
    rt: Rt,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """Who the bearer token speaks for, within the token's rate limit."""
    if credentials is None or not credentials.credentials:
        raise ApiProblem(
            401,
            "unauthenticated",
            "no bearer token",
            "send Authorization: Bearer <token> (`shipyard tokens create NAME --role R`)",
        )
    found = authenticate(rt, credentials.credentials.strip())
    if found is None:
        raise ApiProblem(401, "unauthenticated", "the token is unknown, malformed or revoked")
    limiter: RateLimiter = request.app.state.limiter
    wait = limiter.hit(found.token_id)
    if wait > 0:
        seconds = retry_seconds(wait)
        raise ApiProblem(
            429,
            "rate-limited",
            f"more than {limiter.per_minute} requests in a minute with this token",
            f"retry-after {seconds} s",
            retry_after=seconds,
        )
    return found


def _may(what: str) -> Callable[[Caller], Caller]:
    def check(found: Annotated[Caller, Depends(caller)]) -> Caller:
        if not role_may(found.role, what):
            raise ApiProblem(
                403,
                "forbidden-role",
                f"a {found.role} token may not {what}",
                f"roles that may: {', '.join(sorted(ROLE_MAY[what]))}",
            )
        return found

    return check


Reader = Annotated[Caller, Depends(_may("read"))]
"""Any valid token."""
Operator = Annotated[Caller, Depends(_may("operate"))]
"""An operator's or an admin's token: submits, supplies code, resumes, steers releases."""
Approver = Annotated[Caller, Depends(_may("decide"))]
"""An approver's or an admin's token: approves and rejects."""
Auditor = Annotated[Caller, Depends(_may("audit"))]
"""An admin's token: reads the audit log."""

Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
Cursor = Annotated[str, Query(max_length=12, description="next_cursor of the previous page")]


def offset_of(cursor: str) -> int:
    """Where a page starts: the cursor this API gave out with the page before."""
    if not cursor:
        return 0
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 9:  # "²".isdigit()
        raise InputError(
            f"cursor {cursor[:40]!r} is not one this API gave out",
            hint="pass next_cursor as it came",
        )
    return int(cursor)


PageT = TypeVar("PageT", bound=BaseModel)


def page_of(kind: type[PageT], items: Sequence[Any], offset: int, limit: int) -> PageT:
    """A page of ``kind`` from ``items``: up to limit + 1 of them from ``offset`` (an extra
    one says there is a next page)."""
    more = len(items) > limit
    return kind.model_validate(
        {"items": list(items[:limit]), "next_cursor": str(offset + limit) if more else None}
    )
