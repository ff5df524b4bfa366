"""What the console's pages show, shaped for its templates: an attempt's files with their
findings, a repository change's diff by file, diffs, a trace's waterfall, a lineage graph,
bar charts; the templates themselves and how a state reads (its tone).

Every state the templates name comes from the enums (``TaskState``, ``ReleaseState``), handed
to every template as globals, so a new state shows up in the filter and in colour without
touching a template.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Any, Final

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from shipyard.model import CheckReport, ReleaseState, TaskState
from shipyard.server._console_session import Session
from shipyard.service import Trace
from shipyard.service import role_may as may

__all__ = [
    "HTMX",
    "ROLLBACK_FROM",
    "STYLESHEET",
    "TEMPLATES",
    "attempt_view",
    "change_view",
    "chart",
    "diff",
    "graph",
    "render",
    "tone",
    "waterfall",
]

HTMX = Path(os.environ.get("SHIPYARD_HTMX") or Path(sys.prefix) / "share/shipyard/htmx.min.js")
"""HTMX, installed into the environment by scripts/bootstrap.sh (from the npm registry)."""

STYLESHEET = Path(__file__).with_name("templates") / "console.css"
"""The console's styles: a file of its own, since the Content-Security-Policy forbids inline
style."""

ROLLBACK_FROM: Final = tuple(s for s in ReleaseState if s.baking or s is ReleaseState.LIVE)
"""Release states a person may roll back from: a rollout under way, or a live release."""

_TONES: Final[dict[str, str]] = {
    **{s: "tone-bad" for s in TaskState if s.terminal},  # stopped short, unless below
    **{s: "tone-warn" for s in TaskState if s.settled and not s.terminal},  # waits for a person
    **{s: "tone-warn" for s in ReleaseState if s.baking},
    ReleaseState.ROLLED_BACK: "tone-bad",
    ReleaseState.WITHDRAWN: "tone-bad",
    TaskState.PUBLISHED: "tone-ok",
    TaskState.DONE: "tone-ok",
    ReleaseState.LIVE: "tone-ok",
}


def tone(state: str) -> str:
    """The CSS class a state reads in: it worked, it stopped short, it waits ('' under way)."""
    return _TONES.get(state, "")


TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
TEMPLATES.env.globals.update(
    TaskState=TaskState,
    ReleaseState=ReleaseState,
    task_states=[s.value for s in TaskState],
    rollback_from=ROLLBACK_FROM,
    tone=tone,
)


def render(request: Request, name: str, session: Session | None, **context: Any) -> Response:
    """The template ``name`` for ``session`` (None: signed out)."""
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


def attempt_view(attempt: Any) -> dict[str, Any]:
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


SHOWN_LINES: Final = 2000
"""A changed file's diff lines shown on a page; findings on the lines past them are listed
with the file, and the whole patch stays one click away."""


def change_view(told: dict[str, Any]) -> dict[str, Any] | None:
    """A repository change's attempt as the task and approval pages show it, from the read
    model every face shares (an attempt of :func:`shipyard.service.story_dict`, whose
    ``change`` holds the diff by file with the findings at their lines); None for an
    attempt of another job kind."""
    change = told.get("change")
    if not change:
        return None
    summary = dict(change.get("summary") or {})
    facts = dict(change.get("facts") or {})
    files = [_file_view(entry) for entry in change.get("diff") or []]
    paths = {f["path"] for f in files}
    report = told.get("report") or {}
    found = [f for r in report.get("results", []) for f in r.get("findings", [])]
    context = dict(change.get("context") or {})
    return {
        "tests": _tests(facts),
        "dependencies": list(facts.get("new_dependencies") or []),
        "files": files,
        "added": sum(f["added"] for f in files),
        "removed": sum(f["removed"] for f in files),
        "base": summary.get("base", ""),
        "tree": summary.get("tree", ""),
        "findings": len(found),
        "elsewhere": [f for f in found if f.get("file", "") not in paths],
        "context": [str(f.get("path", "")) for f in context.get("files", [])],
        "context_tokens": context.get("tokens"),
    }


def _tests(facts: dict[str, Any]) -> dict[str, str] | None:
    """'12 passed, 0 failed' and its tone; None when the tests did not run (or the count is
    not known)."""
    passed = int(facts.get("tests_passed", -1))
    if passed < 0:
        return None
    failed, errors = int(facts.get("tests_failed", 0)), int(facts.get("tests_errors", 0))
    skipped = int(facts.get("tests_skipped", 0))
    text = f"{passed} passed, {failed} failed"
    text += f", {errors} error(s)" if errors > 0 else ""
    text += f", {skipped} skipped" if skipped > 0 else ""
    if failed > 0 or errors > 0:
        tone_ = "tone-bad"
    elif passed == 0:
        tone_, text = "tone-warn", text + " (no test ran)"
    else:
        tone_ = "tone-ok"
    return {"text": text, "tone": tone_}


def _file_view(entry: dict[str, Any]) -> dict[str, Any]:
    """One changed file (a ``FileDiff.to_dict()``), its lines cut at :data:`SHOWN_LINES`:
    the findings under the lines cut join the file's own."""
    lines = list(entry.get("lines") or [])
    shown, cut = lines[:SHOWN_LINES], lines[SHOWN_LINES:]
    findings = [f for line in cut for f in line.get("findings", [])]
    return {
        "path": str(entry.get("path", "")),
        "status": str(entry.get("status", "modified")),
        "added": int(entry.get("added", 0)),
        "removed": int(entry.get("removed", 0)),
        "binary": bool(entry.get("binary", False)),
        "lines": shown,
        "more": len(cut),
        "findings": list(entry.get("findings") or []) + findings,
    }


def diff(before: dict[str, str], after: dict[str, str], number: int) -> dict[str, Any]:
    """The unified diff from attempt ``number`` to the next."""
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


def waterfall(trace: Trace) -> list[dict[str, Any]]:
    """A task's spans as bars on one time axis (per cent of the whole), in start order."""
    spans = trace.spans
    if not spans:
        return []
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    total = max(end - start, 1)
    return [
        {
            "name": s.name,
            "span_id": s.span_id,
            "trace_id": s.trace_id,
            "status": s.status,
            "left": 100 * (s.start_ns - start) / total,
            "width": max(100 * (s.end_ns - s.start_ns) / total, 0.4),
            "ms": (s.end_ns - s.start_ns) / 1e6,
        }
        for s in spans
    ]


def graph(found: dict[str, Any]) -> dict[str, Any]:
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


def chart(title: str, points: list[tuple[str, float | None]]) -> dict[str, Any]:
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
