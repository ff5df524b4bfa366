"""examples/api_client.py, run as a user runs it: a separate process speaking HTTP to the API
served on loopback over the e-commerce example, with a worker running its tasks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from server.test_api import serving
from shipyard.config import Project
from shipyard.server import PROBLEM, create_token
from shipyard.service import Runtime, find_task, list_tasks
from shipyard.store import TaskRow
from support import REPO

SCRIPT = REPO / "examples" / "api_client.py"


@dataclass(frozen=True, kw_only=True)
class Served:
    rt: Runtime
    url: str
    tokens: dict[str, str]
    """Role -> a token: alice is the operator, bob the approver, carol the viewer."""


@pytest.fixture
def served(project: Project, start_worker: Callable[..., Runtime]) -> Iterator[Served]:
    rt = start_worker(project)
    tokens = {
        "operator": create_token(rt, "alice", "operator", actor="ops")[1],
        "approver": create_token(rt, "bob", "approver", actor="ops")[1],
        "viewer": create_token(rt, "carol", "viewer", actor="ops")[1],
    }
    with serving(rt) as url:
        yield Served(rt=rt, url=url, tokens=tokens)


def run_client(
    url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--url", url, "--timeout", "90", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**clean, **(env or {})},
        check=False,
    )


def test_the_example_client_takes_a_task_from_submission_to_its_published_lineage(
    served: Served,
) -> None:
    done = run_client(
        served.url,
        "--job", "landing-page", "--input", "sku=SKU-123", "--input", "name=Camp Kettle",
        env={
            "SHIPYARD_SUBMIT_TOKEN": served.tokens["operator"],
            "SHIPYARD_APPROVE_TOKEN": served.tokens["approver"],
        },
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [task] = [t for t in _tasks(served.rt) if t.input_key == "SKU-123"]
    assert task.state == "published" and task.artifact_id
    assert task.submitted_by == "alice"
    out = done.stdout
    assert f"task       {task.id}" in out
    assert "state      published" in out
    assert f"artifact   {task.artifact_id}" in out
    assert "tier template" in out
    assert "approved by bob" in out
    assert "release    storefront-site" in out
    assert "waiting_approval" in done.stderr  # the progress it reported on the way


def test_a_refused_request_prints_its_problem_and_exits_non_zero(served: Served) -> None:
    refused = run_client(
        served.url,
        "--submit-token", served.tokens["viewer"],
        "--approve-token", served.tokens["approver"],
    )  # fmt: skip
    assert refused.returncode == 1
    assert PROBLEM + "forbidden-role" in refused.stderr
    assert "a viewer token may not operate" in refused.stderr
    assert "hint:" in refused.stderr and "operator" in refused.stderr
    assert refused.stdout == ""
    assert _tasks(served.rt) == []  # nothing was submitted


def test_approving_ones_own_submission_is_denied_by_policy(served: Served) -> None:
    alone = run_client(
        served.url,
        "--submit-token", served.tokens["operator"],
        "--approve-token", create_token(served.rt, "alice", "approver", actor="ops")[1],
    )  # fmt: skip
    assert alone.returncode == 1
    assert PROBLEM + "policy-denied" in alone.stderr
    assert "still waits for approval" in alone.stderr
    [task] = _tasks(served.rt)
    assert find_task(served.rt, task.id).state == "waiting_approval"


def _tasks(rt: Runtime) -> list[TaskRow]:
    return list_tasks(rt)
