"""``shipyard change`` as a user runs it: the repository-change example (recorded replies,
the repository's own tests in the sandbox, one approval by someone else, the branch), and
workers killed with SIGKILL while generating and while releasing."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from repos_support import EXAMPLE_GOAL, repo_example, run_git
from support import as_person, run_cli

pytestmark = pytest.mark.slow


def _change(root: Path, env: dict[str, str]) -> str:
    done = run_cli(root, "change", "inventory", EXAMPLE_GOAL, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["task"])


def _worker(root: Path, crash_at: str = "") -> int:
    env = {"SHIPYARD_CRASHPOINTS": crash_at} if crash_at else {}
    done = run_cli(root, "worker", "--until-idle", env=env, timeout=600)
    if not crash_at:
        assert done.returncode == 0, done.stderr
    return done.returncode


def _show(root: Path, task_id: str) -> dict:  # type: ignore[type-arg]
    done = run_cli(root, "show", task_id, "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _commits_on(repo: Path, branch: str) -> list[str]:
    return run_git(repo, "rev-list", f"main..{branch}").split()


def test_the_example_change_is_repaired_approved_and_released_as_a_branch(
    tmp_path: Path, database: str
) -> None:
    root = repo_example(tmp_path / "example")
    developer, reviewer = as_person(root, "developer"), as_person(root, "reviewer")
    task_id = _change(root, developer)
    _worker(root)

    story = _show(root, task_id)
    assert story["task"]["state"] == "waiting_approval"
    first, second = story["attempts"]
    assert first["passed"] is False and second["passed"] is True
    tests = next(r for r in first["report"]["results"] if r["check"] == "test")
    assert any("test_the_last_unit_can_be_reserved" in f["message"] for f in tests["findings"])
    assert second["change"]["facts"]["tests_passed"] == 7
    paths = [d["path"] for d in second["change"]["diff"]]
    assert paths == ["inventory/stock.py", "tests/test_stock.py"]
    shown = run_cli(root, "show", task_id)
    assert "inventory/stock.py" in shown.stdout and "tests: 7 passed" in shown.stdout

    mine = run_cli(root, "approve", task_id, "--as", "developer", env=developer)
    assert mine.returncode != 0  # the submitter never approves their own change
    approved = run_cli(root, "approve", task_id, "--as", "reviewer", env=reviewer)
    assert approved.returncode == 0, approved.stderr
    _worker(root)
    assert _show(root, task_id)["task"]["state"] == "published"
    repo = root / "inventory"
    assert len(_commits_on(repo, f"shipyard/{task_id}")) == 1
    message = run_git(repo, "log", "-1", "--format=%B", f"shipyard/{task_id}")
    assert f"Shipyard-Task: {task_id}" in message
    assert "raise OutOfStock" in run_git(repo, "show", f"shipyard/{task_id}:inventory/stock.py")
    assert run_git(repo, "status", "--porcelain") == ""  # the checkout is untouched


def test_killed_while_generating_and_while_releasing_commits_once(
    tmp_path: Path, database: str
) -> None:
    root = repo_example(tmp_path / "example")
    developer, reviewer = as_person(root, "developer"), as_person(root, "reviewer")
    task_id = _change(root, developer)
    assert _worker(root, crash_at="generate.change_made") == -signal.SIGKILL
    _worker(root)
    story = _show(root, task_id)
    assert story["task"]["state"] == "waiting_approval"
    generate1 = next(s for s in story["steps"] if s["stage"] == "generate" and s["attempt"] == 1)
    assert generate1["runs"] == 2  # the attempt in flight was made again, from a clean copy
    assert len(story["attempts"]) == 2

    approved = run_cli(root, "approve", task_id, "--as", "reviewer", env=reviewer)
    assert approved.returncode == 0, approved.stderr
    assert _worker(root, crash_at="tool.publish.called") == -signal.SIGKILL
    _worker(root)
    assert _show(root, task_id)["task"]["state"] == "published"
    assert len(_commits_on(root / "inventory", f"shipyard/{task_id}")) == 1
