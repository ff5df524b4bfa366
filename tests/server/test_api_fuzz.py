"""Schemathesis against /api/v1/openapi.json on a live server: no request makes a 5xx, and
every response, errors included, is what the document says (its status, its media type, its
schema, its headers). Schemathesis runs in its default mode, ``all``: valid requests and
negative ones (values that break the schema, which must be refused with a 4xx); and a method
a path does not take must be a 405. Then every operation gets malformed bytes by hand: bodies
that are not UTF-8, lone surrogates and NUL escapes, NaN, nesting hundreds deep, bodies over
the limit, NUL and broken percent-escapes in paths and query strings; each is a 4xx problem
document, never a 5xx."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from server.test_api import serving
from shipyard.config import Project
from shipyard.jobs import BatchRow
from shipyard.server import PROBLEM, AdminLimits, create_token
from shipyard.service import Runtime, find_task, submit
from support import PRODUCT, SETTLED, wait_for_state

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "unsupported_method",
)

GENEROUS = AdminLimits(
    requests_per_minute=1_000_000,
    failed_auth_per_minute=1_000_000,
    anonymous_requests_per_minute=1_000_000,
    figures_per_minute=1_000_000,
)
"""Fuzzing makes thousands of requests from one address: no throttle may answer for the API."""


def test_no_generated_request_makes_a_server_error_or_strays_from_the_document(
    project: Project, start_worker: Callable[..., Runtime], database: str, tmp_path: Path
) -> None:
    if database != "sqlite":
        pytest.skip("fuzzed once: the API code is the same on both databases")
    rt = start_worker(project)
    token = create_token(rt, "ops", "admin", actor="ops")[1]
    # Something to find: a task at the gate and its artifact, so the routes that take an id
    # reach their logic rather than a 404.
    [task_id] = submit(
        rt, rt.jobs.get("landing-page"), [BatchRow(where="t", data=PRODUCT)], submitted_by="a"
    ).submitted
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    artifact = find_task(rt, task_id).artifact_id
    (tmp_path / "schemathesis.toml").write_text(
        f'[parameters]\n"path.task_id" = "{task_id}"\n"path.artifact_id" = "{artifact}"\n'
    )
    viewer = create_token(rt, "carol", "viewer", actor="ops")[1]
    with serving(rt, limits=GENEROUS) as url:
        # As an admin (every route's logic), as a viewer (refused by role: 403) and with no
        # token at all (401): the refusals must fit the document as well as the answers.
        for token_, examples in ((token, 15), (viewer, 3), ("", 2)):
            done = _schemathesis(url, token_, examples, tmp_path)
            assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
            assert "Tested: 20" in done.stdout and " passed" in done.stdout


def _schemathesis(
    url: str, token: str, examples: int, cwd: Path
) -> subprocess.CompletedProcess[str]:
    auth = ["--header", f"Authorization: Bearer {token}"] if token else []
    return subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run",
            f"{url}/api/v1/openapi.json",
            "--checks", ",".join(CHECKS),
            *auth,
            "--max-examples", str(examples),
            "--seed", "1",
            "--workers", "1",
            "--request-timeout", "30",
        ],
        capture_output=True, text=True, timeout=600, cwd=cwd, check=False,
    )  # fmt: skip


JSON = "application/json"

MALFORMED_BODIES: dict[str, tuple[bytes, str]] = {
    "not UTF-8": (b'{"job_kind": "landing-page", "inputs": {"sku": "\xff\xfe"}}', JSON),
    "overlong UTF-8": (b'{"reason": "\xc0\xaf"}', JSON),
    "lone surrogate": (b'{"job_kind": "x", "inputs": {"s": "\\ud800"}, "reason": "\\udfff"}', JSON),
    "NUL": (b'{"job_kind": "\\u0000", "inputs": {"s": "\\u0000"}, "reason": "\\u0000"}', JSON),
    "NaN": (b'{"job_kind": "x", "inputs": {"n": NaN}, "reason": "x"}', JSON),
    "huge number": (b'{"job_kind": "x", "inputs": {"n": 1e999}, "reason": "x"}', JSON),
    "long integer": (b'{"job_kind": "x", "inputs": {"n": ' + b"9" * 5000 + b"}}", JSON),
    "deep": (b'{"inputs": {"a": ' + b"[" * 600 + b"]" * 600 + b"}}", JSON),
    "deeper than the parser": (b"[" * 200_000 + b"]" * 200_000, JSON),
    "truncated": (b'{"job_kind": "landing-', JSON),
    "not an object": (b"[1, 2, 3]", JSON),
    "empty": (b"", JSON),
    "wrong type": (b"job_kind=x", "application/x-www-form-urlencoded"),
    "form not UTF-8": (b"reason=%ff%fe", "application/x-www-form-urlencoded"),
    "text": (b"\xff\x00", "text/plain"),
    "too large": (b'{"reason": "' + b"a" * (5 << 20) + b'"}', JSON),
}  # fmt: skip

MALFORMED_TARGETS = (
    "?limit=%ff", "?cursor=%00", "?job_kind=a%00b", "?state=%c0%af", "?cursor=%C2%B2",
    "/%00", "/%ff%fe", "/..%2f..%2fetc", "?limit=" + "9" * 5000,
)  # fmt: skip


def test_malformed_bytes_to_every_operation_are_problems_never_server_errors(
    project: Project, start_worker: Callable[..., Runtime], database: str
) -> None:
    rt = start_worker(project)
    token = create_token(rt, "ops", "admin", actor="ops")[1]
    [task_id] = submit(
        rt, rt.jobs.get("landing-page"), [BatchRow(where="t", data=PRODUCT)], submitted_by="a"
    ).submitted
    assert wait_for_state(rt, task_id, SETTLED) == "waiting_approval"
    headers = {"Authorization": f"Bearer {token}"}
    with serving(rt, limits=GENEROUS) as url, httpx.Client(base_url=url, timeout=60) as client:
        document = client.get("/api/v1/openapi.json").json()
        tried = 0
        for template, operations in document["paths"].items():
            path = template.replace("{task_id}", task_id).replace("{command}", "pause")
            path = path.replace("{artifact_id}", task_id)
            for method in operations:
                for name, (body, kind) in MALFORMED_BODIES.items():
                    if method == "get" and name != "too large":
                        continue
                    sent = {**headers, "Content-Type": kind}
                    answer = client.request(method, path, content=body, headers=sent)
                    _is_a_problem(answer, f"{method.upper()} {path} with a body {name}")
                    tried += 1
                for target in MALFORMED_TARGETS:
                    answer = client.request(method, path + target, headers=headers)
                    _is_a_problem(answer, f"{method.upper()} {path}{target}", ok=True)
                    tried += 1
        assert tried > 150
        # Nothing that was refused left a record behind, and everything stored still lists.
        listed = client.get("/api/v1/tasks?limit=500", headers=headers)
        assert listed.status_code == 200
        assert [t["id"] for t in listed.json()["items"]] == [task_id]


def _is_a_problem(answer: httpx.Response, what: str, *, ok: bool = False) -> None:
    """A 4xx problem document (``ok``: or a success, for a query value that happens to fit)."""
    assert answer.status_code < 500, (what, answer.status_code, answer.text[:500])
    if ok and answer.status_code < 400:
        return
    assert 400 <= answer.status_code < 500, (what, answer.status_code, answer.text[:300])
    assert answer.headers["content-type"] == "application/problem+json", (what, answer.headers)
    problem = answer.json()
    assert problem["type"].startswith(PROBLEM) and problem["status"] == answer.status_code
