"""Problem details (RFC 9457): how every error of the API looks on the wire and in the
OpenAPI document.

A service function's error carries its own status and problem name
(``ShipyardError.http_status`` / ``.problem`` in :mod:`shipyard.errors`); the API's own
refusals (no token, a role that may not, too many requests) are :class:`ApiProblem`. Either
way the answer is ``application/problem+json`` with ``type`` (``urn:shipyard:problem:<name>``,
stable per kind of error), ``title``, ``status``, ``detail`` and, when there is something to
say, a ``hint`` naming what to do next.
"""

from __future__ import annotations

from html import escape
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from shipyard.errors import ShipyardError

__all__ = [
    "PROBLEM",
    "PROBLEM_JSON",
    "ApiProblem",
    "Problem",
    "error_page",
    "install_problem_handlers",
    "problem_response",
    "problems",
]

PROBLEM: Final = "urn:shipyard:problem:"
"""Prefix of every problem ``type``; the rest names the error (``not-found``, ...)."""

PROBLEM_JSON: Final = "application/problem+json"


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (sent as ``application/problem+json``)."""

    type: str = Field(
        description="urn:shipyard:problem:<name>: stable for each kind of error "
        "(not-found, conflict, policy-denied, forbidden-role, rate-limited, ...)",
        examples=[PROBLEM + "not-found"],
    )
    title: str = Field(description="A short name of the kind of error")
    status: int = Field(description="The HTTP status, repeated", ge=400, le=599)
    detail: str = Field(description="What went wrong with this request")
    hint: str = Field(
        default="", description="What to do next (left out when there is nothing to say)"
    )


_MEANS: Final[dict[int, str]] = {
    400: "The request's values are wrong: an ambiguous id, a cursor or a window this API "
    "does not know; a body that is not UTF-8 or JSON, or nested too deep",
    401: "No valid bearer token: missing, malformed, unknown or revoked",
    403: "The token's role may not do this, or a policy forbids it for the token's person",
    404: "No such task, artifact, release or job kind",
    409: "The action does not fit the record's state (e.g. approving a finished task)",
    413: "The body, or a string in it, is larger than the server accepts",
    422: "The request does not fit its schema, holds text that is not well-formed (a lone "
    "surrogate, a NUL) or a number out of range, or the project's configuration is wrong",
    429: "Too many requests with this token (or failures from this address) in a minute: "
    "wait Retry-After seconds",
    503: "A store, sandbox, provider or tool failed underneath: try again later",
}

_HEADERS: Final[dict[int, dict[str, Any]]] = {
    401: {
        "WWW-Authenticate": {
            "description": "Bearer: the scheme this API wants",
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds until this token may send again",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that can fail with ``statuses``: each a problem document
    (``application/problem+json``, the ``Problem`` schema), with its headers."""
    found: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": _MEANS[status],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        found[status] = response
    return found


def problem_schema() -> dict[str, Any]:
    """The ``Problem`` schema for the OpenAPI document's components."""
    return Problem.model_json_schema(ref_template="#/components/schemas/{model}")


class ApiProblem(Exception):
    """An error the API itself raises (authentication, role, rate limit)."""

    def __init__(
        self, status: int, kind: str, detail: str, hint: str = "", *, retry_after: int = 0
    ) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail, self.hint = status, kind, detail, hint
        self.retry_after = retry_after


def problem_response(
    status: int, kind: str, title: str, detail: str, hint: str = ""
) -> JSONResponse:
    """A problem document with ``status``; ``kind`` names it (``not-found``, ...)."""
    body: dict[str, Any] = {
        "type": PROBLEM + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if hint:
        body["hint"] = hint
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def _shipyard_error(_request: Request, exc: ShipyardError) -> JSONResponse:
    return problem_response(exc.http_status, exc.problem, type(exc).__name__, exc.message, exc.hint)


async def _api_problem(_request: Request, exc: ApiProblem) -> JSONResponse:
    response = problem_response(
        exc.status, exc.kind, exc.kind.replace("-", " "), exc.detail, exc.hint
    )
    if exc.status == 429:
        response.headers["Retry-After"] = str(exc.retry_after or 60)
    return response


async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return problem_response(
        422,
        "invalid-request",
        "invalid request",
        f"{where}: {first.get('msg', 'invalid')}",
        "see /api/v1/openapi.json for the request's shape",
    )


_KINDS: Final[dict[int, str]] = {
    400: "invalid-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "body-too-large",
    422: "invalid-request",
}


def error_page(title: str, detail: str, hint: str = "") -> str:
    """A console error outside any route (no such page, a refusal at the door): plain HTML
    with no script, linking back to the console."""
    parts = [f"<p>{escape(detail)}</p>"] + ([f"<p>{escape(hint)}</p>"] if hint else [])
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f" · Shipyard</title></head><body><h1>That did not work</h1>{''.join(parts)}"
        '<p><a href="/console/">Tasks</a></p></body></html>'
    )


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own refusals (no such path, a method the path does not take)."""
    kind = _KINDS.get(exc.status_code, "http-error")
    response: Response
    if request.url.path.startswith("/console"):
        page = error_page(kind.replace("-", " "), str(exc.detail))
        response = HTMLResponse(page, status_code=exc.status_code)
    else:
        response = problem_response(
            exc.status_code, kind, kind.replace("-", " "), str(exc.detail), "see /api/v1/docs"
        )
    response.headers.update(exc.headers or {})
    return response


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error ``app`` answers with a problem document."""
    app.exception_handler(ShipyardError)(_shipyard_error)
    app.exception_handler(ApiProblem)(_api_problem)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(HTTPException)(_http_error)
