"""The console over real HTTP without a browser: sign-in, sessions, CSRF, roles, every page.

(The browser tests in tests/console drive the same pages in Chromium.)
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
import uvicorn

from repos_support import make_repository, run_git, write
from shipyard.config import Project, load_project
from shipyard.jobs import BatchRow
from shipyard.model import CheckReport, CheckResult, Finding, TaskState
from shipyard.repos import file_diffs
from shipyard.sandbox import bwrap_available
from shipyard.server import create_app, create_token, revoke_token
from shipyard.server._console_views import TEMPLATES, change_view
from shipyard.service import Runtime, submit, submit_change
from shipyard.testing import FunctionProvider
from support import PRODUCT, SETTLED, wait_for_state


@contextmanager
def serving(rt: Runtime) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(rt), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the console did not start"
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def sign_in(url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    form = client.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf, form.text
    done = client.post("/console/login", data={"token": token, "csrf": csrf.group(1)})
    assert done.status_code == 303 and done.headers["location"] == "/console/"
    cookie = done.headers["set-cookie"]
    assert "shipyard_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@pytest.fixture
def waiting(project: Project, start_worker: Callable[..., Runtime]) -> tuple[Runtime, str]:
    rt = start_worker(project)
    [task_id] = submit(
        rt, rt.jobs.get("landing-page"), [BatchRow(where="t", data=PRODUCT)], submitted_by="alice"
    ).submitted
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    return rt, task_id


def test_signing_in_needs_a_valid_token_and_the_form_s_own_csrf(
    waiting: tuple[Runtime, str],
) -> None:
    rt, _ = waiting
    token_id, token = create_token(rt, "carol", "viewer", actor="ops")
    with serving(rt) as url, httpx.Client(base_url=url) as client:
        assert client.get("/console/").headers["location"] == "/console/login"
        csrf = csrf_of(client.get("/console/login").text)
        refused = client.post("/console/login", data={"token": "nope", "csrf": csrf})
        assert refused.status_code == 401 and 'class="error"' in refused.text
        forged = httpx.post(url + "/console/login", data={"token": token, "csrf": "x"})
        assert forged.status_code == 400  # no login cookie to match: a cross-site post
        viewer = sign_in(url, token)
        assert viewer.get("/console/").status_code == 200
        revoke_token(rt, token_id, actor="ops")
        # The session lives on its own; a new sign-in with the revoked token does not.
        csrf = csrf_of(client.get("/console/login").text)
        assert client.post("/console/login", data={"token": token, "csrf": csrf}).status_code == 401


def test_every_page_reads_without_javascript(waiting: tuple[Runtime, str]) -> None:
    rt, task_id = waiting
    with serving(rt) as url:
        client = sign_in(url, create_token(rt, "carol", "viewer", actor="ops")[1])
        tasks = client.get("/console/")
        assert f'data-task="{task_id}"' in tasks.text and 'id="tasks"' in tasks.text
        offered = set(re.findall(r'<option value="([a-z_]+)"', tasks.text))
        assert offered == {s.value for s in TaskState}  # the filter offers every state
        assert 'src="/console/static/htmx.min.js"' in tasks.text  # installed by bootstrap
        assert client.get("/console/static/htmx.min.js").status_code == 200
        rows = client.get("/console/tasks/rows")
        assert task_id in rows.text and "<html" not in rows.text  # the fragment HTMX swaps in
        page = client.get(f"/console/tasks/{task_id}")
        for marker in ('id="timeline"', 'class="attempt"', 'id="diff"', 'id="trace"', 'id="cost"'):
            assert marker in page.text, marker
        assert PRODUCT["name"] in page.text  # the generated page's code, shown
        queue = client.get("/console/approvals")
        assert f'href="/console/approvals/{task_id}"' in queue.text
        approval = client.get(f"/console/approvals/{task_id}")
        assert 'id="diff"' in approval.text and 'class="add"' in approval.text
        assert 'value="approve"' not in approval.text  # a viewer is not offered the form
        assert client.get("/console/releases").status_code == 200
        assert 'class="chart"' in client.get("/console/stats").text
        artifact = rt.jobs and client.get(f"/console/tasks/{task_id}").text
        found = re.search(r'href="/console/artifacts/([^"]+)"', artifact)
        assert found
        lineage = client.get(f"/console/artifacts/{found.group(1)}")
        assert 'id="lineage"' in lineage.text and 'id="provenance"' in lineage.text


def test_a_decision_needs_the_session_s_csrf_token_and_the_role(
    waiting: tuple[Runtime, str],
) -> None:
    rt, task_id = waiting
    with serving(rt) as url:
        viewer = sign_in(url, create_token(rt, "carol", "viewer", actor="ops")[1])
        csrf = csrf_of(viewer.get(f"/console/approvals/{task_id}").text)
        refused = viewer.post(
            f"/console/approvals/{task_id}", data={"decision": "approve", "csrf": csrf}
        )
        assert refused.status_code == 403 and "may not" in refused.text
        approver = sign_in(url, create_token(rt, "bob", "approver", actor="ops")[1])
        forged = approver.post(
            f"/console/approvals/{task_id}", data={"decision": "approve", "csrf": "forged"}
        )
        assert forged.status_code == 403 and "CSRF" in forged.text
        assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
        csrf = csrf_of(approver.get(f"/console/approvals/{task_id}").text)
        done = approver.post(
            f"/console/approvals/{task_id}",
            data={"decision": "approve", "reason": "fine", "csrf": csrf},
        )
        assert done.status_code == 303 and done.headers["location"] == f"/console/tasks/{task_id}"
        assert wait_for_state(rt, task_id, {"published"}) == "published"


def test_the_submitter_cannot_approve_in_the_console_either(
    waiting: tuple[Runtime, str],
) -> None:
    rt, task_id = waiting  # submitted by alice
    with serving(rt) as url:
        alice = sign_in(url, create_token(rt, "alice", "approver", actor="ops")[1])
        csrf = csrf_of(alice.get(f"/console/approvals/{task_id}").text)
        refused = alice.post(
            f"/console/approvals/{task_id}", data={"decision": "approve", "csrf": csrf}
        )
        assert refused.status_code == 403 and "cannot also approve" in refused.text


# -- a repository change ---------------------------------------------------------------------

CALC = {
    "calc/__init__.py": '"""A tiny calculator."""\n\n\ndef add(a, b):\n    return a - b\n',
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}

MARKUP = '  # <script>alert("calc")</script>'
"""A comment in the change: file contents are untrusted text, shown escaped."""

WRONG = f"""calc/__init__.py
<<<<<<< SEARCH
def add(a, b):
    return a - b
=======
import os


def add(a, b):
    return "<b>" + str(a * b){MARKUP}
>>>>>>> REPLACE
"""
"""Attempt 1: an unused import (a finding at its line) and a sum that is wrong, with markup
in the failing test's message."""

FIX = f"""calc/__init__.py
<<<<<<< SEARCH
import os


def add(a, b):
    return "<b>" + str(a * b){MARKUP}
=======
def add(a, b):
    return a + b{MARKUP}
>>>>>>> REPLACE
"""
"""Attempt 2, from where attempt 1 left the file: the fix."""


class _Rows(HTMLParser):
    """The rows of each changed file's table on a page: {section id: [(row class, text)]}."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, list[tuple[str, str]]] = {}
        self._file = ""
        self._row: list[str] | None = None
        self._kind = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "details" and "change-file" in (found.get("class") or ""):
            self._file = found.get("id") or ""
            self.files[self._file] = []
        elif tag == "tr" and self._file and found.get("class"):
            self._kind, self._row = found.get("class") or "", []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self.files[self._file].append((self._kind, " ".join(self._row)))
            self._row = None
        elif tag == "details":
            self._file = ""

    def handle_data(self, data: str) -> None:
        if self._row is not None and data.strip():
            self._row.append(data.strip())


def changed_files(html: str) -> dict[str, list[tuple[str, str]]]:
    parser = _Rows()
    parser.feed(html)
    return parser.files


def calc_project(tmp_path: Path) -> Project:
    """A project with one repository (calc, whose add subtracts) and two people."""
    repo = make_repository(tmp_path / "calc", CALC)
    root = tmp_path / "project"
    root.mkdir()
    (root / "shipyard.toml").write_text(
        f'[project]\nname = "changes"\n\n[repos.calc]\npath = "{repo}"\n'
        "\n[people.me]\nroles = []\n[people.bob]\nroles = []\n"
    )
    return load_project(root)


@pytest.mark.usefixtures("database")
def test_a_repository_change_reads_by_file_with_its_tests_and_each_finding_under_its_line(
    tmp_path: Path, start_worker: Callable[..., Runtime]
) -> None:
    if not bwrap_available():
        pytest.skip("a repository change's tests run in bubblewrap, which is not usable here")
    replies = (WRONG, FIX)
    rt = start_worker(
        calc_project(tmp_path),
        FunctionProvider(lambda request: replies[min(request.attempt, 2) - 1], model="edits"),
    )
    task_id = submit_change(rt, "calc", "fix add: it subtracts", submitted_by="me").submitted[0]
    assert wait_for_state(rt, task_id, SETTLED, timeout=180) == "waiting_approval"
    with serving(rt) as url:
        bob = sign_in(url, create_token(rt, "bob", "approver", actor="bob")[1])
        page = bob.get(f"/console/tasks/{task_id}").text
        assert "<script>alert" not in page and "&lt;script&gt;alert(" in page
        assert "fix add: it subtracts" in page  # the goal
        files = changed_files(page)
        first, second = files["change-1-file-1"], files["change-2-file-1"]
        # Attempt 1: the unused import's finding right under the line that adds it.
        at = next(n for n, (kind, text) in enumerate(first) if text.endswith("import os"))
        line, mark = first[at][1].split()[:2]
        assert first[at][0] == "added" and line.isdigit() and mark == "+"
        assert first[at + 1][0] == "finding-row" and "F401" in first[at + 1][1]
        # ... and the failing test, in a file the change does not touch, listed on its own.
        elsewhere = page.split('id="change-1-elsewhere"')[1].split("</ul>")[0]
        assert "tests/test_calc.py" in elsewhere and "&lt;b&gt;" in elsewhere
        assert "0 passed, 1 failed" in page
        assert ("added", f"5 + added return a + b{MARKUP}") in second

        approval = bob.get(f"/console/approvals/{task_id}").text
        assert "<script>alert" not in approval
        assert re.search(r'class="state tone-ok">1 passed, 0 failed<', approval)
        assert "New dependencies: none" in approval
        [rows] = changed_files(approval).values()  # the change being decided: attempt 2
        assert ("removed", "5 − removed return a - b") in rows
        assert ("added", f"5 + added return a + b{MARKUP}") in rows
        summary = approval.split('id="change-file-1"')[1].split("</summary>")[0]
        assert "calc/__init__.py" in summary and "modified" in summary
        assert "+1" in summary and "−1" in summary
        assert 'href="#decision"' in approval and 'value="approve"' in approval
        assert "F401" not in approval  # attempt 1's findings are not this change's


def test_a_change_s_dependencies_binary_files_long_files_and_stray_findings_are_shown(
    tmp_path: Path,
) -> None:
    """The change partial over a real git patch, in the read model's shape (an attempt of
    ``story_dict``): what the bubblewrapped pipeline above does not produce."""
    repo = make_repository(tmp_path / "r", {"pkg/a.py": "x = 1\ny = 2\n"})
    write(
        repo,
        {
            "pkg/a.py": 'x = "<img src=x onerror=alert(1)>"\ny = 2\n',
            "logo.png": b"\x89PNG\r\n\x1a\n\x00\x00",
            "big.txt": "".join(f"line {n}\n" for n in range(1, 2101)),
        },
    )
    run_git(repo, "add", "-A")
    patch = run_git(repo, "diff", "--cached", "--binary")
    findings = [
        Finding(rule="ruff.S1", message="<b>markup</b> in a message", file="pkg/a.py", line=1),
        Finding(rule="ruff.S2", message="about an untouched line", file="pkg/a.py", line=40),
        Finding(rule="big.late", message="past what is shown", file="big.txt", line=2050),
        Finding(rule="imports.new", message="requests is new", severity="warning"),
    ]
    told = {
        "report": CheckReport(
            results=(CheckResult(check="x", passed=False, findings=tuple(findings)),)
        ).to_dict(),
        "change": {
            "summary": {"base": "0" * 40, "tree": "1" * 40},
            "facts": {
                "tests_passed": 3,
                "tests_failed": 0,
                "tests_skipped": 1,
                "new_dependencies": ["requests"],
            },
            "context": {"files": [{"path": "pkg/a.py"}], "tokens": 120},
            "diff": [d.to_dict() for d in file_diffs(patch, findings)],
        },
    }
    view = change_view(told)
    assert view is not None and change_view({"change": None}) is None
    html = TEMPLATES.get_template("_change.html").render(
        change=view, prefix="c", patch=patch, context=True
    )
    assert "<img" not in html and "<b>markup" not in html  # escaped, every one
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;b&gt;markup" in html
    assert re.search(r'class="state tone-ok">3 passed, 0 failed, 1 skipped<', html)
    assert re.search(r'class="new-deps">New dependencies:\s*<strong class="dep">requests<', html)
    sections = html.split('<details class="change-file" id="')[1:]
    by_path = {_between(part, '<code class="path">', "<"): part for part in sections}
    assert set(by_path) == {"pkg/a.py", "logo.png", "big.txt"}
    assert "binary, added" in by_path["logo.png"]
    assert "contents are not shown" in by_path["logo.png"]
    rows = changed_files(html)[by_path["pkg/a.py"].split('"')[0]]
    at = rows.index(("added", '1 + added x = "<img src=x onerror=alert(1)>"'))
    assert rows[at + 1] == ("finding-row", "↑ ruff.S1 : <b>markup</b> in a message")
    assert "ruff.S2</strong> line 40: about an untouched line" in by_path["pkg/a.py"]
    big = by_path["big.txt"]
    assert "+2100" in big and "101 more line(s) not shown here: the whole patch is below" in big
    assert "big.late</strong> line 2050: past what is shown" in big
    elsewhere = html.split('id="c-elsewhere"')[1].split("</ul>")[0]
    assert "imports.new" in elsewhere and "ruff.S1" not in elsewhere
    assert "Sent to the model: 1 file(s), about 120 tokens" in html


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]
