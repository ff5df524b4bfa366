"""The API and console under attack, from outside, against a live server composed as
``shipyard serve`` composes it: the gateway (site and handlers) on one port, the API and the
console on an admin port of their own. Each test is one finding of the security review, now
refused or fixed, on SQLite and PostgreSQL. (The browser's side of the origins is in
tests/console/test_storefront_origin.py; ``shipyard serve`` itself in test_serve_origins.py.)
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from server.test_console import csrf_of, sign_in
from shipyard.config import Project
from shipyard.errors import NotFound
from shipyard.jobs import BatchRow
from shipyard.release import StaticSite
from shipyard.server import (
    PROBLEM,
    AdminLimits,
    Gateway,
    Served,
    create_app,
    create_token,
    revoke_token,
)
from shipyard.service import Runtime, find_task, list_tasks, submit
from support import PRODUCT, SETTLED, wait_for_state

PROBLEM_JSON = "application/problem+json"


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass(frozen=True, kw_only=True)
class Live:
    rt: Runtime
    site: str
    """The gateway's URL: the storefront and handlers."""
    admin: str
    """The admin origin's URL: /api/v1 and /console."""
    app: FastAPI
    """The admin app (its state: sessions, figures)."""

    def api(self, token: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.admin + "/api/v1", headers=headers, timeout=60)


@contextmanager
def serving_both(rt: Runtime, limits: AdminLimits | None = None) -> Iterator[Live]:
    """The gateway and the admin app on two loopback ports, as ``shipyard serve`` runs them."""
    site = rt.target("storefront-site")
    assert isinstance(site, StaticSite)
    gateway = Gateway(site=site, sessions=rt.sessions, isolate=False)
    admin = create_app(rt, limits=limits or AdminLimits())
    site_sock, admin_sock = _socket(), _socket()
    ports = frozenset({admin_sock.getsockname()[1]})
    server = uvicorn.Server(
        uvicorn.Config(
            Served(admin, gateway, admin_ports=ports), log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [site_sock, admin_sock]}, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield Live(
            rt=rt,
            site=f"http://127.0.0.1:{site_sock.getsockname()[1]}",
            admin=f"http://127.0.0.1:{admin_sock.getsockname()[1]}",
            app=admin,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def rt(project: Project, start_worker: Callable[..., Runtime]) -> Runtime:
    return start_worker(project)


@pytest.fixture
def live(rt: Runtime) -> Iterator[Live]:
    with serving_both(rt) as found:
        yield found


def _waiting_task(rt: Runtime) -> str:
    rows = [BatchRow(where="security test", data=PRODUCT)]
    [task_id] = submit(rt, rt.jobs.get("landing-page"), rows, submitted_by="alice").submitted
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    return task_id


def _problem(answer: httpx.Response, status: int, kind: str = "") -> dict[str, Any]:
    assert answer.status_code == status, (answer.status_code, answer.text[:400])
    assert answer.headers["content-type"] == PROBLEM_JSON, answer.headers
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["type"].startswith(PROBLEM)
    if kind:
        assert body["type"] == PROBLEM + kind, body
    return body


# -- sessions ---------------------------------------------------------------------------------


def test_revoking_a_token_ends_its_console_session_at_once(live: Live) -> None:
    task_id = _waiting_task(live.rt)
    token_id, token = create_token(live.rt, "bob", "approver", actor="ops")
    browser = sign_in(live.admin, token)
    page = browser.get(f"/console/approvals/{task_id}")
    assert page.status_code == 200 and "Reject" in page.text
    csrf, sid = csrf_of(page.text), browser.cookies["shipyard_session"]

    revoke_token(live.rt, token_id, actor="ops")

    # The form the page still shows: refused, and nothing decided.
    form = {"csrf": csrf, "decision": "reject", "reason": "seen after revocation"}
    refused = browser.post(f"/console/approvals/{task_id}", data=form)
    assert refused.status_code == 401 and "revoked" in refused.text
    assert find_task(live.rt, task_id).state == "waiting_approval"
    # The session is gone server-side: the old cookie, replayed, opens nothing.
    replayed = httpx.get(
        f"{live.admin}/console/approvals/{task_id}", cookies={"shipyard_session": sid}
    )
    assert replayed.status_code == 303 and replayed.headers["location"] == "/console/login"
    _problem(live.api(token).get("/tasks"), 401, "unauthenticated")


def test_signing_in_again_or_out_ends_the_earlier_session_server_side(live: Live) -> None:
    token = create_token(live.rt, "carol", "viewer", actor="ops")[1]
    first = sign_in(live.admin, token)
    first_sid = first.cookies["shipyard_session"]
    second = sign_in(live.admin, token)  # the same token, elsewhere
    assert first.get("/console/").status_code == 303  # the earlier session ended
    assert second.get("/console/").status_code == 200

    sid = second.cookies["shipyard_session"]
    out = second.post("/console/logout", data={"csrf": "not this session's"})
    assert out.status_code == 303
    for old in (sid, first_sid):
        replayed = httpx.get(f"{live.admin}/console/", cookies={"shipyard_session": old})
        assert replayed.status_code == 303, "a session outlived its sign-out"
    assert not live.app.state.sessions.live(sid)


# -- inputs at the door -----------------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_deep_inputs_are_refused_and_what_is_stored_always_lists(live: Live) -> None:
    operator = live.api(create_token(live.rt, "alice", "operator", actor="ops")[1])
    deep = {"job_kind": "landing-page", "inputs": {**PRODUCT, "x": _nested(500)}}
    refused = _problem(operator.post("/tasks", json=deep), 400, "too-deep")
    assert "32" in refused["detail"] and "max_json_depth" in refused["hint"]
    assert list_tasks(live.rt) == []

    # The nastiest inputs the door still takes: as deep as it allows, its longest strings,
    # every plane of Unicode, markup and controls. Stored (as invalid tasks: too deep for a
    # job kind), and every read of them answers.
    nasty = "\U0001f600\u202e<script>alert(1)</script>\x01\x7f\ufeff\U0010fffd" * 1000
    rows = [
        {**PRODUCT, "sku": "NASTY-1", "x": _nested(29)},
        {**PRODUCT, "sku": "NASTY-2", "name": nasty, "\u202ekey": nasty},
        {**PRODUCT, "sku": "NASTY-3", "x": "y" * 1_000_000},
    ]
    taken = operator.post("/tasks/batch", json={"job_kind": "landing-page", "rows": rows})
    assert taken.status_code == 201, taken.text[:400]
    made = [r["task_id"] for r in taken.json()["rejected"]] + taken.json()["submitted"]
    assert len(made) == 3
    listed = operator.get("/tasks", params={"limit": 500})
    assert listed.status_code == 200 and len(listed.json()["items"]) == 3
    assert len(listed.content) < 200_000  # a refused row keeps a bounded record
    token = create_token(live.rt, "carol", "viewer", actor="ops")[1]
    browser = sign_in(live.admin, token)
    for task_id in made:
        assert operator.get(f"/tasks/{task_id}").status_code == 200
        assert browser.get(f"/console/tasks/{task_id}").status_code == 200
    assert browser.get("/console/").status_code == 200


def test_bodies_over_the_limit_are_refused_before_they_are_stored(live: Live) -> None:
    operator = live.api(create_token(live.rt, "alice", "operator", actor="ops")[1])
    big = {"job_kind": "landing-page", "inputs": {**PRODUCT, "x": "a" * (5 << 20)}}
    refused = _problem(operator.post("/tasks", json=big), 413, "body-too-large")
    assert str(4 << 20) in refused["detail"] and "max_body_bytes" in refused["hint"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"job_kind": "landing-page", "inputs": {"x": "'
        for _ in range(6):
            yield b"a" * (1 << 20)
        yield b'"}}'

    streamed = operator.post(
        "/tasks", content=chunks(), headers={"Content-Type": "application/json"}
    )
    _problem(streamed, 413, "body-too-large")
    long = {"job_kind": "landing-page", "inputs": {**PRODUCT, "x": "a" * ((1 << 20) + 1)}}
    _problem(operator.post("/tasks", json=long), 413, "string-too-long")
    assert list_tasks(live.rt) == []


BAD_BYTES = {
    "lone surrogate": (b'{"job_kind": "landing-page", "inputs": {"sku": "\\ud800"}}', 422),
    "NUL": (b'{"job_kind": "landing-page", "inputs": {"sku": "a\\u0000"}}', 422),
    "not UTF-8": (b'{"job_kind": "landing-page", "inputs": {"sku": "\xff"}}', 400),
    "NaN": (b'{"job_kind": "landing-page", "inputs": {"sku": NaN}}', 400),
    "infinity": (b'{"job_kind": "landing-page", "inputs": {"sku": 1e999}}', 422),
    "not JSON": (b'{"job_kind": ', 400),
}


@pytest.mark.parametrize("case", sorted(BAD_BYTES))
def test_bad_bytes_are_problems_not_server_errors(live: Live, case: str) -> None:
    body, status = BAD_BYTES[case]
    operator = live.api(create_token(live.rt, "alice", "operator", actor="ops")[1])
    sent = operator.post("/tasks", content=body, headers={"Content-Type": "application/json"})
    _problem(sent, status)
    assert list_tasks(live.rt) == []


def test_bad_bytes_elsewhere_are_problems_too(live: Live) -> None:
    viewer = live.api(create_token(live.rt, "carol", "viewer", actor="ops")[1])
    _problem(viewer.get("/tasks", params={"cursor": "²"}), 400, "invalid-input")  # kept
    _problem(viewer.get("/tasks?job_kind=a%00b"), 400, "invalid-encoding")
    _problem(viewer.get("/tasks?job_kind=%ff%fe"), 400, "invalid-encoding")
    _problem(viewer.get("/tasks/t-%00"), 400, "invalid-encoding")
    _problem(viewer.get("/no-such-route"), 404, "not-found")  # kept
    _problem(viewer.delete("/tasks"), 405, "method-not-allowed")
    _problem(viewer.post("/tasks", json={"job_kind": 1}), 403)  # a viewer: refused by role
    # The console's sign-in with a CSRF value that is not ASCII (kept), and a form that is
    # not UTF-8: refusals, not 500s.
    form = httpx.post(f"{live.admin}/console/login", data={"token": "x", "csrf": "é"})
    assert form.status_code == 400
    raw = httpx.post(
        f"{live.admin}/console/login",
        content=b"token=%ff&csrf=%fe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert raw.status_code == 400 and raw.headers["content-type"].startswith("text/html")


# -- origins and headers ----------------------------------------------------------------------


def test_the_storefront_and_the_console_have_origins_of_their_own(live: Live) -> None:
    token = create_token(live.rt, "carol", "viewer", actor="ops")[1]
    bearer = {"Authorization": f"Bearer {token}"}
    # The gateway's port serves no console and no API, whatever the path.
    for path in ("/console/", "/console/login", "/api/v1/tasks", "/api/v1/openapi.json"):
        answer = httpx.get(live.site + path, headers=bearer)
        assert answer.status_code == 404 and "Shipyard" not in answer.text, path
    # ... and the admin port serves no site.
    assert httpx.get(live.admin + "/").status_code == 404
    assert live.api(token).get("/tasks").status_code == 200


def test_every_admin_answer_carries_the_security_headers(live: Live) -> None:
    token = create_token(live.rt, "carol", "viewer", actor="ops")[1]
    browser = sign_in(live.admin, token)
    answers = [
        browser.get("/console/"),
        browser.get("/console/login"),
        browser.get("/console/static/console.css"),
        live.api(token).get("/tasks"),
        live.api("").get("/tasks"),  # a 401
        live.api(token).get("/docs"),
    ]
    for answer in answers:
        headers = answer.headers
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, answer.url
        assert "unsafe-inline" not in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
    page = browser.get("/console/").text
    assert "<style" not in page and "<script>" not in page and " style=" not in page


def test_the_api_reference_is_served_from_here_without_script(live: Live) -> None:
    docs = httpx.get(live.admin + "/api/v1/docs")
    assert docs.status_code == 200 and "/api/v1/tasks" in docs.text
    assert "<script" not in docs.text and "cdn" not in docs.text.lower()
    assert "http" not in docs.text.replace("/api/v1/openapi.json", "").split("<body>")[1]


# -- smaller findings -------------------------------------------------------------------------


def test_a_double_slash_redirects_within_the_site(live: Live) -> None:
    site = live.rt.target("storefront-site")
    assert isinstance(site, StaticSite)
    site.publish(key="t-page", path="products/x", files={"index.html": b"<p>x</p>"})
    for asked in ("//products/x", "///products/x", "/\\products/x"):
        answer = httpx.get(live.site + asked)
        if answer.status_code == 308:
            location = answer.headers["location"]
            assert location.startswith("/") and not location.startswith(("//", "/\\"))
        else:
            assert answer.status_code == 404, (asked, answer.status_code)
    assert httpx.get(live.site + "//products/x").headers["location"] == "/products/x/"


def test_id_prefixes_are_taken_literally(live: Live) -> None:
    task_id = _waiting_task(live.rt)
    viewer = live.api(create_token(live.rt, "carol", "viewer", actor="ops")[1])
    assert viewer.get(f"/tasks/{task_id[:12]}").status_code == 200  # a real prefix
    for wildcard in ("t-%", "t-_", "%", "_", task_id[:12].upper()):
        with pytest.raises(NotFound):
            find_task(live.rt, wildcard)
        _problem(viewer.get(f"/tasks/{wildcard}"), 404, "not-found")
        _problem(viewer.get(f"/artifacts/{wildcard}/lineage"), 404, "not-found")
    _problem(viewer.get("/artifacts/sha256:%25/lineage"), 404, "not-found")
    operator = live.api(create_token(live.rt, "alice", "operator", actor="ops")[1])
    _problem(operator.post("/releases/t-%25/pause"), 404, "not-found")


def test_failed_sign_ins_and_unauthenticated_requests_are_throttled_per_address(
    rt: Runtime,
) -> None:
    limits = AdminLimits(failed_auth_per_minute=5, anonymous_requests_per_minute=40)
    token = create_token(rt, "carol", "viewer", actor="ops")[1]
    with serving_both(rt, limits) as live:
        browser = sign_in(live.admin, token)  # signed in before the attack
        forged = live.api("shy_000000000000_" + "A" * 43)
        for _ in range(5):
            _problem(forged.get("/tasks"), 401)
        body = _problem(forged.get("/tasks"), 429, "too-many-failures")
        assert "5 failed" in body["detail"]
        assert 1 <= int(forged.get("/tasks").headers["retry-after"]) <= 60
        # A right token from this address waits too (the secret cannot be guessed meanwhile);
        # the console session opened before still works.
        _problem(live.api(token).get("/tasks"), 429, "too-many-failures")
        assert browser.get("/console/").status_code == 200
        login = httpx.post(f"{live.admin}/console/login", data={"token": token, "csrf": "x"})
        assert login.status_code == 429 and login.headers["content-type"].startswith("text/html")

    with serving_both(rt, limits) as live:
        anonymous = [httpx.get(f"{live.admin}/api/v1/openapi.json") for _ in range(41)]
        assert [a.status_code for a in anonymous[:40]] == [200] * 40
        _problem(anonymous[40], 429, "rate-limited")
        assert live.api(token).get("/tasks").status_code == 200  # a token is not anonymous


def test_figures_are_kept_and_rationed_per_token(rt: Runtime) -> None:
    limits = AdminLimits(figures_per_minute=3, figures_cache_seconds=600)
    with serving_both(rt, limits) as live:
        viewer = live.api(create_token(rt, "carol", "viewer", actor="ops")[1])
        kept = live.app.state.figures
        for _ in range(20):  # the same question: computed once
            assert viewer.get("/stats").status_code == 200
        assert kept.computed == 1
        for since in ("1d", "2d"):
            assert viewer.get("/stats", params={"since": since}).status_code == 200
        body = _problem(viewer.get("/stats", params={"since": "3d"}), 429, "rate-limited")
        assert "3 figures" in body["detail"]
        assert kept.computed == 3
        # Another token asking what is kept costs nothing; a new question has its own ration.
        other = live.api(create_token(rt, "bob", "viewer", actor="ops")[1])
        assert other.get("/stats", params={"since": "2d"}).status_code == 200
        assert kept.computed == 3
        assert other.get("/budgets").status_code == 200 and kept.computed == 4


def test_the_document_says_a_body_may_be_too_large(live: Live) -> None:
    document = httpx.get(live.admin + "/api/v1/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                too_large = operation["responses"]["413"]
                assert PROBLEM_JSON in too_large["content"], (method, path)
