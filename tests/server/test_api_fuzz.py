"""Schemathesis against /api/v1/openapi.json on a live server: no request makes a 5xx, and
every response, errors included, is what the document says (its status, its media type, its
schema, its headers)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from server.test_api import serving
from shipyard.config import Project
from shipyard.jobs import BatchRow
from shipyard.server import create_token
from shipyard.service import Runtime, find_task, submit
from support import PRODUCT, SETTLED, wait_for_state

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)


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
    with serving(rt, per_minute=1_000_000) as url:
        # As an admin (every route's logic), as a viewer (refused by role: 403) and with no
        # token at all (401): the refusals must fit the document as well as the answers.
        for token_, examples in ((token, 15), (viewer, 3), ("", 2)):
            done = _schemathesis(url, token_, examples, tmp_path)
            assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
            assert "Tested: 17" in done.stdout and " passed" in done.stdout


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
