"""The operator's console (``/console``): server-rendered pages over the same service
functions, tokens and roles as the API.

People sign in with an API token; the console keeps it server-side and gives the browser an
HttpOnly, SameSite=Strict session cookie instead. Every form carries the session's CSRF
token. Pages read without JavaScript; with it, HTMX refreshes the task list in place.
"""

from __future__ import annotations

import difflib
import functools
import hmac
import json
import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from shipyard.errors import InputError, PolicyDenied, ShipyardError
from shipyard.model import CheckReport
from shipyard.server._api import status_of
from shipyard.server._roles import may
from shipyard.server._tokens import Caller, authenticate
from shipyard.service import (
    Runtime,
    approval_queue,
    approve,
    daily_figures,
    diff_against_previous,
    figures,
    lineage,
    list_tasks,
    reject,
    releases,
    steer,
    task_story,
    task_trace,
)
from shipyard.store import SpanRow, TaskRow

__all__ = ["COOKIE", "Sessions", "console_router"]

COOKIE = "shipyard_session"
LOGIN_COOKIE = "shipyard_login"
SESSION_HOURS = 12
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
HTMX = Path(os.environ.get("SHIPYARD_HTMX") or Path(sys.prefix) / "share/shipyard/htmx.min.js")
"""HTMX, installed into the environment by scripts/bootstrap.sh (from the npm registry)."""


@dataclass(frozen=True, kw_only=True)
class Session:
    caller: Caller
    csrf: str
    expires: float


class Sessions:
    """Signed-in browsers of this process: session id -> who, CSRF token, expiry."""

    def __init__(self) -> None:
        self._found: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, caller: Caller) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._found = {k: v for k, v in self._found.items() if v.expires > now}
            self._found[sid] = Session(
                caller=caller, csrf=secrets.token_urlsafe(24), expires=now + SESSION_HOURS * 3600
            )
        return sid

    def get(self, sid: str) -> Session | None:
        with self._lock:
            found = self._found.get(sid)
        return found if found is not None and found.expires > time.time() else None

    def close(self, sid: str) -> None:
        with self._lock:
            self._found.pop(sid, None)


class _SignIn(Exception):
    """Not signed in: go to the login page."""


def console_router(rt: Runtime, sessions: Sessions) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)

    def session_of(request: Request) -> Session:
        found = sessions.get(request.cookies.get(COOKIE, ""))
        if found is None:
            raise _SignIn
        # A revoked token ends its sessions at the next page.
        return found

    def page(request: Request, name: str, session: Session | None, **context: Any) -> Response:
        return TEMPLATES.TemplateResponse(
            request,
            name,
            {
                "me": session.caller if session else None,
                "csrf": session.csrf if session else "",
                "may": (lambda what: may(session.caller.role, what)) if session else None,
                "htmx": HTMX.is_file(),
                **context,
            },
        )

    def checked(request: Request, session: Session, csrf: str, what: str) -> None:
        if not hmac.compare_digest(csrf, session.csrf):
            raise PolicyDenied(
                "the form's CSRF token does not match this session",
                hint="reload the page and send the form again",
            )
        if not may(session.caller.role, what):
            raise PolicyDenied(
                f"a {session.caller.role} token may not do that",
                hint="sign in with a token of a role that may",
            )

    def guarded(handler: Any) -> Any:
        """Pages: to the login page when signed out, errors shown on the page.

        Handlers are plain functions: FastAPI runs them in its thread pool, so the service
        functions' database and DBOS calls never hold up the event loop."""

        @functools.wraps(handler)
        def wrapper(request: Request, **kwargs: Any) -> Response:
            try:
                return handler(request, **kwargs)  # type: ignore[no-any-return]
            except _SignIn:
                return RedirectResponse("/console/login", status_code=303)
            except ShipyardError as exc:
                session = sessions.get(request.cookies.get(COOKIE, ""))
                response = page(request, "error.html", session, error=exc)
                response.status_code = status_of(exc)[0]
                return response

        return wrapper

    # -- signing in ----------------------------------------------------------------------

    def login_page(request: Request, error: str, status: int = 200) -> Response:
        # Signing in has no session yet: its CSRF token is a cookie the form repeats.
        nonce = secrets.token_urlsafe(24)
        response = page(request, "login.html", None, error=error, login_csrf=nonce)
        response.status_code = status
        response.set_cookie(
            LOGIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict", path="/console"
        )
        return response

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        return login_page(request, "")

    @router.post("/login", response_class=HTMLResponse)
    def login(
        request: Request, token: str = Form(default=""), csrf: str = Form(default="")
    ) -> Response:
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(csrf, expected):
            return login_page(request, "The form expired; sign in again.", 400)
        caller = authenticate(rt, token.strip())
        if caller is None:
            return login_page(request, "That token is unknown or revoked.", 401)
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
    def logout(request: Request, csrf: str = Form(default="")) -> Response:
        found = sessions.get(request.cookies.get(COOKIE, ""))
        if found is not None and hmac.compare_digest(csrf, found.csrf):
            sessions.close(request.cookies.get(COOKIE, ""))
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(COOKIE, path="/console")
        return response

    @router.get("/static/htmx.min.js")
    def htmx() -> Response:
        if not HTMX.is_file():
            return Response(status_code=404)
        return Response(HTMX.read_bytes(), media_type="text/javascript")

    # -- tasks ---------------------------------------------------------------------------

    def _rows(state: str) -> list[TaskRow]:
        return list_tasks(rt, states=[state] if state else [], limit=200, newest_first=True)

    @router.get("/", response_class=HTMLResponse)
    @guarded
    def tasks(request: Request) -> Response:
        session = session_of(request)
        state = request.query_params.get("state", "")
        return page(request, "tasks.html", session, tasks=_rows(state), state=state)

    @router.get("/tasks/rows", response_class=HTMLResponse)
    @guarded
    def task_rows(request: Request) -> Response:
        session = session_of(request)
        state = request.query_params.get("state", "")
        return page(request, "_task_rows.html", session, tasks=_rows(state))

    @router.get("/tasks/{task_id}", response_class=HTMLResponse)
    @guarded
    def task(request: Request, task_id: str) -> Response:
        session = session_of(request)
        story = task_story(rt, task_id)
        attempts = [_attempt_view(a) for a in story.attempts]
        diffs = [
            _diff(attempts[n - 1]["sources"], attempts[n]["sources"], n)
            for n in range(1, len(attempts))
        ]
        spans = task_trace(rt, story.task.id).spans
        base, live_diff = diff_against_previous(rt, story.task)
        cost = sum((a.cost_usd for a in story.attempts), Decimal(0))
        return page(
            request,
            "task.html",
            session,
            story=story,
            attempts=attempts,
            diffs=diffs,
            live_diff=live_diff,
            base=base,
            cost=cost,
            tokens=sum(a.input_tokens + a.output_tokens for a in story.attempts),
            waterfall=_waterfall(spans),
        )

    # -- approvals -----------------------------------------------------------------------

    @router.get("/approvals", response_class=HTMLResponse)
    @guarded
    def approvals(request: Request) -> Response:
        session = session_of(request)
        return page(request, "approvals.html", session, waiting=approval_queue(rt))

    @router.get("/approvals/{task_id}", response_class=HTMLResponse)
    @guarded
    def approval(request: Request, task_id: str) -> Response:
        session = session_of(request)
        story = task_story(rt, task_id)
        base, diff = diff_against_previous(rt, story.task)
        report = story.attempts[-1].report if story.attempts else None
        findings = CheckReport.from_dict(report).findings if report else []
        return page(
            request,
            "approval.html",
            session,
            story=story,
            diff=diff,
            base=base,
            findings=findings,
        )

    @router.post("/approvals/{task_id}")
    @guarded
    def decide(
        request: Request,
        task_id: str,
        decision: str = Form(default=""),
        reason: str = Form(default=""),
        csrf: str = Form(default=""),
    ) -> Response:
        session = session_of(request)
        checked(request, session, csrf, "decide")
        if decision == "approve":
            row = approve(rt, task_id, actor=session.caller.person, reason=reason)
        elif decision == "reject":
            row = reject(rt, task_id, actor=session.caller.person, reason=reason)
        else:
            raise InputError(f"unknown decision {decision!r}", hint="approve or reject")
        return RedirectResponse(f"/console/tasks/{row.id}", status_code=303)

    # -- artifacts, releases, figures ----------------------------------------------------

    @router.get("/artifacts/{artifact_id}", response_class=HTMLResponse)
    @guarded
    def artifact(request: Request, artifact_id: str) -> Response:
        session = session_of(request)
        found = lineage(rt, artifact_id)
        return page(
            request,
            "artifact.html",
            session,
            lineage=found,
            graph=_graph(found),
            provenance=json.dumps(found, indent=2, default=str),
        )

    @router.get("/releases", response_class=HTMLResponse)
    @guarded
    def releases_page(request: Request) -> Response:
        session = session_of(request)
        return page(request, "releases.html", session, releases=releases(rt, limit=100))

    @router.post("/releases/{task_id}")
    @guarded
    def steer_release(
        request: Request, task_id: str, command: str = Form(default=""), csrf: str = Form("")
    ) -> Response:
        session = session_of(request)
        checked(request, session, csrf, "operate")
        steer(rt, task_id, command, actor=session.caller.person)
        return RedirectResponse("/console/releases", status_code=303)

    @router.get("/stats", response_class=HTMLResponse)
    @guarded
    def stats(request: Request) -> Response:
        session = session_of(request)
        days = 14
        shown = {
            "success rate": "Success rate",
            "cost per task (mean)": "Cost per task (USD)",
            "end-to-end latency p50": "Latency p50 (s)",
            "mean time to recover": "Mean time to recover (s)",
        }
        daily = daily_figures(rt, days=days, names=list(shown))
        series = {
            shown[name]: [(f"{day:%m-%d}", value) for day, value in points]
            for name, points in daily.items()
        }
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        now = figures(rt, since=today - timedelta(days=days - 1), until=datetime.now(UTC))
        charts = [_chart(title, points) for title, points in series.items()]
        return page(request, "stats.html", session, charts=charts, figures=now, days=days)

    return router


# -- views -----------------------------------------------------------------------------------


def _attempt_view(attempt: Any) -> dict[str, Any]:
    """An attempt's files with their findings at their lines."""
    report = CheckReport.from_dict(attempt.report) if attempt.report else None
    findings = report.findings if report else []
    files = []
    for name, content in sorted((attempt.files or {}).items()):
        lines = str(content).splitlines()
        at: dict[int, list[Any]] = {}
        for f in findings:
            if f.file == name and f.line:
                at.setdefault(f.line, []).append(f)
        files.append({"name": name, "lines": list(enumerate(lines, start=1)), "at": at})
    loose = [f for f in findings if not f.line or f.file not in (attempt.files or {})]
    return {
        "attempt": attempt,
        "files": files,
        "loose": loose,
        "sources": {n: str(c) for n, c in (attempt.files or {}).items()},
    }


def _diff(before: dict[str, str], after: dict[str, str], number: int) -> dict[str, Any]:
    lines: list[str] = []
    for name in sorted(set(before) | set(after)):
        lines += difflib.unified_diff(
            before.get(name, "").splitlines(),
            after.get(name, "").splitlines(),
            fromfile=f"attempt {number}/{name}",
            tofile=f"attempt {number + 1}/{name}",
            lineterm="",
        )
    return {"from": number, "to": number + 1, "lines": lines}


def _waterfall(spans: list[SpanRow]) -> list[dict[str, Any]]:
    if not spans:
        return []
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    total = max(end - start, 1)
    return [
        {
            "name": s.name,
            "status": s.status,
            "left": 100 * (s.start_ns - start) / total,
            "width": max(100 * (s.end_ns - s.start_ns) / total, 0.4),
            "ms": (s.end_ns - s.start_ns) / 1e6,
        }
        for s in spans
    ]


def _graph(found: dict[str, Any]) -> dict[str, Any]:
    """Columns of a lineage graph: inputs -> tasks -> attempts -> artifact -> releases."""
    columns: list[list[str]] = [[], [], [], [], []]
    edges: list[tuple[int, int, int, int]] = []
    columns[3].append(f"artifact {found['artifact']['id'][:19]}")
    for task in found["tasks"]:
        columns[0].append(f"inputs {str(task.get('inputs_hash', ''))[:12]}")
        columns[1].append(f"task {task['task']}")
        t = len(columns[1]) - 1
        edges.append((0, len(columns[0]) - 1, 1, t))
        for attempt in task.get("attempts", []):
            columns[2].append(
                f"#{attempt.get('number')} {attempt.get('model') or attempt.get('tier')}"
            )
            edges.append((1, t, 2, len(columns[2]) - 1))
            if attempt.get("passed"):
                edges.append((2, len(columns[2]) - 1, 3, 0))
        for release in task.get("releases", []):
            columns[4].append(f"{release.get('target')} {release.get('state')}")
            edges.append((3, 0, 4, len(columns[4]) - 1))
    height = max(len(c) for c in columns) * 56 + 20
    nodes = [
        {"x": 10 + ci * 190, "y": 10 + ri * 56, "label": label}
        for ci, column in enumerate(columns)
        for ri, label in enumerate(column)
    ]

    def centre(ci: int, ri: int) -> tuple[float, float]:
        return 10 + ci * 190 + 170, 10 + ri * 56 + 20

    lines = [(*centre(a, b), 10 + c * 190, 10 + d * 56 + 20) for a, b, c, d in edges]
    return {"nodes": nodes, "lines": lines, "width": 5 * 190 + 20, "height": height}


def _chart(title: str, points: list[tuple[str, float | None]]) -> dict[str, Any]:
    """A bar chart's geometry (SVG drawn by the template): one bar per day."""
    values = [v for _, v in points if v is not None]
    top = max(values, default=0.0) or 1.0
    width, height = 28, 120
    bars = [
        {
            "x": 40 + n * width,
            "h": 0 if v is None else height * v / top,
            "label": label,
            "value": v,
        }
        for n, (label, v) in enumerate(points)
    ]
    return {
        "title": title,
        "bars": bars,
        "top": top,
        "height": height,
        "width": 60 + len(points) * width,
    }
