"""The operator's console (``/console``): server-rendered pages over the same service
functions, tokens and roles as the API.

People sign in with an API token; the console keeps it server-side and gives the browser an
HttpOnly, SameSite=Strict session cookie instead (:mod:`shipyard.server._console_session`).
Every form carries the session's CSRF token. Pages read without JavaScript; with it, HTMX
refreshes the task list in place.

The routes are one module-level router; like the API's they find the Runtime and the
session through dependencies. Handlers are plain functions: FastAPI runs them in its thread
pool, so the service functions' database and DBOS calls never hold up the event loop.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from shipyard.errors import InputError, ShipyardError
from shipyard.model import CheckReport
from shipyard.server._console_session import (
    COOKIE,
    LOGIN_COOKIE,
    SESSION_HOURS,
    Deciding,
    Operating,
    Sessions,
    SignedIn,
    SignIn,
    same,
    session_of,
)
from shipyard.server._console_views import (
    HTMX,
    STYLESHEET,
    attempt_view,
    change_view,
    chart,
    diff,
    graph,
    render,
    waterfall,
)
from shipyard.server._deps import Rt
from shipyard.server._figures import Figures
from shipyard.server._problems import ApiProblem
from shipyard.service import (
    Runtime,
    approval_queue,
    approve,
    authenticate,
    daily_figures,
    diff_against_previous,
    figures,
    incidents,
    lineage,
    list_tasks,
    monitors,
    reject,
    releases,
    resolve_incident,
    steer,
    story_dict,
    task_dict,
    task_story,
    task_trace,
)

__all__ = ["router"]


class _Page(APIRoute):
    """A console page: to the login page when signed out; a service function's error shown
    on the error page, with the error's own HTTP status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except SignIn as exc:
                if exc.revoked:
                    response = _login_page(request, "Your token was revoked; sign in again.", 401)
                    response.delete_cookie(COOKIE, path="/console")
                    return response
                return RedirectResponse("/console/login", status_code=303)
            except ShipyardError as exc:
                response = render(request, "error.html", session_of(request), error=exc)
                response.status_code = exc.http_status
                return response
            except ApiProblem as exc:  # the figures' own limit
                error = InputError(exc.detail, hint=exc.hint)
                response = render(request, "error.html", session_of(request), error=error)
                response.status_code = exc.status
                if exc.retry_after:
                    response.headers["Retry-After"] = str(exc.retry_after)
                return response

        return guarded


router = APIRouter(prefix="/console", include_in_schema=False, route_class=_Page)

# -- signing in ------------------------------------------------------------------------------


def _login_page(request: Request, error: str, status: int = 200) -> Response:
    # Signing in has no session yet: its CSRF token is a cookie the form repeats.
    nonce = secrets.token_urlsafe(24)
    response = render(request, "login.html", None, error=error, login_csrf=nonce)
    response.status_code = status
    response.set_cookie(
        LOGIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict", path="/console"
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return _login_page(request, "")


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    rt: Rt,
    token: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not same(csrf, expected):
        return _login_page(request, "The form expired; sign in again.", 400)
    sessions: Sessions = request.app.state.sessions
    sessions.close(request.cookies.get(COOKIE, ""))  # signing in again ends the session before
    caller = authenticate(rt, token.strip())
    if caller is None:
        return _login_page(request, "That token is unknown or revoked.", 401)
    response = RedirectResponse("/console/", status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path="/console")
    response.set_cookie(
        COOKIE,
        sessions.open(caller),
        max_age=SESSION_HOURS * 3600,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/console",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    # Whatever the form's CSRF token: a forged sign-out only signs a person out, while a
    # session left alive behind a deleted cookie could still be replayed.
    sessions: Sessions = request.app.state.sessions
    sessions.close(request.cookies.get(COOKIE, ""))
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


@router.get("/static/htmx.min.js")
def htmx() -> Response:
    if not HTMX.is_file():
        return Response(status_code=404)
    return Response(HTMX.read_bytes(), media_type="text/javascript")


@router.get("/static/console.css")
def stylesheet() -> Response:
    return Response(STYLESHEET.read_bytes(), media_type="text/css")


# -- tasks -----------------------------------------------------------------------------------


def _rows(rt: Runtime, state: str) -> list[dict[str, Any]]:
    """The newest tasks (in a state), as the API's read model."""
    found = list_tasks(rt, states=[state] if state else [], limit=200, newest_first=True)
    return [task_dict(t) for t in found]


@router.get("/", response_class=HTMLResponse)
def tasks(request: Request, rt: Rt, session: SignedIn, state: str = "") -> Response:
    return render(request, "tasks.html", session, tasks=_rows(rt, state), state=state)


@router.get("/tasks/rows", response_class=HTMLResponse)
def task_rows(request: Request, rt: Rt, session: SignedIn, state: str = "") -> Response:
    return render(request, "_task_rows.html", session, tasks=_rows(rt, state))


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
def task(request: Request, rt: Rt, session: SignedIn, task_id: str) -> Response:
    story = task_story(rt, task_id)
    told = story_dict(story)["attempts"]
    attempts = [
        attempt_view(a) | {"change": change_view(t)}
        for a, t in zip(story.attempts, told, strict=True)
    ]
    # A repository change's attempts each show their own diff against the base; a diff of
    # one patch against the next, or of the patch against the last released one, says less.
    changing = any(a["change"] for a in attempts)
    diffs = [
        diff(attempts[n - 1]["sources"], attempts[n]["sources"], n)
        for n in range(1, 0 if changing else len(attempts))
    ]
    base, live_diff = (None, []) if changing else diff_against_previous(rt, story.task)
    return render(
        request,
        "task.html",
        session,
        story=story,
        attempts=attempts,
        changing=changing,
        diffs=diffs,
        live_diff=live_diff,
        base=base,
        cost=sum((a.cost_usd for a in story.attempts), Decimal(0)),
        tokens=sum(a.input_tokens + a.output_tokens for a in story.attempts),
        waterfall=waterfall(task_trace(rt, story.task.id)),
    )


# -- approvals -------------------------------------------------------------------------------


@router.get("/approvals", response_class=HTMLResponse)
def approvals(request: Request, rt: Rt, session: SignedIn) -> Response:
    return render(request, "approvals.html", session, waiting=approval_queue(rt))


@router.get("/approvals/{task_id}", response_class=HTMLResponse)
def approval(request: Request, rt: Rt, session: SignedIn, task_id: str) -> Response:
    story = task_story(rt, task_id)
    told = story_dict(story)["attempts"]
    change = change_view(told[-1]) if told else None
    # A repository change is decided on its diff against the base, with its test results.
    base, changes = (None, []) if change else diff_against_previous(rt, story.task)
    report = story.attempts[-1].report if story.attempts else None
    findings = CheckReport.from_dict(report).findings if report else []
    return render(
        request,
        "approval.html",
        session,
        story=story,
        change=change,
        attempt=story.attempts[-1] if story.attempts else None,
        diff=changes,
        base=base,
        findings=findings,
    )


@router.post("/approvals/{task_id}")
def decide(
    rt: Rt,
    session: Deciding,
    task_id: str,
    decision: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    if decision == "approve":
        row = approve(rt, task_id, actor=session.caller.person, reason=reason)
    elif decision == "reject":
        row = reject(rt, task_id, actor=session.caller.person, reason=reason)
    else:
        raise InputError(f"unknown decision {decision!r}", hint="approve or reject")
    return RedirectResponse(f"/console/tasks/{row.id}", status_code=303)


# -- artifacts, releases, figures ------------------------------------------------------------


@router.get("/artifacts/{artifact_id}", response_class=HTMLResponse)
def artifact(request: Request, rt: Rt, session: SignedIn, artifact_id: str) -> Response:
    found = lineage(rt, artifact_id)
    return render(
        request,
        "artifact.html",
        session,
        lineage=found,
        graph=graph(found),
        provenance=json.dumps(found, indent=2, default=str),
    )


@router.get("/releases", response_class=HTMLResponse)
def releases_page(request: Request, rt: Rt, session: SignedIn) -> Response:
    return render(request, "releases.html", session, releases=releases(rt, limit=100))


@router.post("/releases/{task_id}")
def steer_release(
    rt: Rt, session: Operating, task_id: str, command: Annotated[str, Form()] = ""
) -> Response:
    steer(rt, task_id, command, actor=session.caller.person)
    return RedirectResponse("/console/releases", status_code=303)


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(request: Request, rt: Rt, session: SignedIn, state: str = "") -> Response:
    return render(
        request,
        "incidents.html",
        session,
        incidents=incidents(rt, state=state, limit=100),
        monitors=monitors(rt),
        state=state,
    )


@router.post("/incidents/{incident_id}")
def resolve_incident_(
    rt: Rt, session: Operating, incident_id: int, note: Annotated[str, Form()] = ""
) -> Response:
    resolve_incident(rt, incident_id, actor=session.caller.person, note=note)
    return RedirectResponse("/console/incidents", status_code=303)


_SHOWN = {
    "success rate": "Success rate",
    "cost per task (mean)": "Cost per task (USD)",
    "end-to-end latency p50": "Latency p50 (s)",
    "mean time to recover": "Mean time to recover (s)",
}
"""The figures charted day by day, and their titles."""


@router.get("/stats", response_class=HTMLResponse)
def stats(request: Request, rt: Rt, session: SignedIn) -> Response:
    days = 14

    def compute() -> tuple[list[dict[str, Any]], list[Any]]:
        daily = daily_figures(rt, days=days, names=list(_SHOWN))
        charts = [
            chart(_SHOWN[name], [(f"{day:%m-%d}", value) for day, value in points])
            for name, points in daily.items()
        ]
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        now = figures(rt, since=today - timedelta(days=days - 1), until=datetime.now(UTC))
        return charts, list(now)

    kept: Figures = request.app.state.figures
    charts, now = kept.get(("console-stats", days), session.caller.token_id, compute)
    return render(request, "stats.html", session, charts=charts, figures=now, days=days)
