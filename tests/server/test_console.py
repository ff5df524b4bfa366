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

import httpx
import pytest
import uvicorn

from shipyard.config import Project
from shipyard.jobs import BatchRow
from shipyard.model import TaskState
from shipyard.server import create_app, create_token, revoke_token
from shipyard.service import Runtime, submit
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
