"""A job kind released to a git target through the pipeline, listed and rolled back by CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from canary_support import PRICE_RULE_JOB, handler_project
from shipyard.config import load_project
from shipyard.jobs import BatchRow
from shipyard.service import Runtime, find_task, submit
from support import SETTLED, run_cli, wait_for_state

pytestmark = pytest.mark.usefixtures("database")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo_project(tmp_path: Path) -> Path:
    root = handler_project(tmp_path / "pricing")
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "README.md").write_text("pricing rules\n")
    git(seed, "add", "README.md")
    git(seed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(root / "rules.git")], check=True)
    config = root / "shipyard.toml"
    config.write_text(
        config.read_text()
        + '\n[targets.rules]\nkind = "git"\nrepository = "rules.git"\nenvironment = "staging"\n'
    )
    job = root / "jobs" / "price-rule" / "job.toml"
    job.write_text(
        PRICE_RULE_JOB.split("[release]")[0]
        + '[release]\ntarget = "rules"\npath = "rules/{{ rule }}"\n'
    )
    return root


def test_a_git_release_merges_and_a_person_reverts_it(
    repo_project: Path, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(load_project(repo_project))
    data = {"rule": "spring", "price": 9.5, "delay_ms": 0, "fail_rate": 0}
    task_id = submit(
        rt, rt.jobs.get("price-rule"), [BatchRow(where="t", data=data)], submitted_by="me"
    ).submitted[0]
    assert wait_for_state(rt, task_id, SETTLED | {"rolled_back"}) == "published"
    repo = repo_project / "rules.git"
    assert git(repo, "ls-tree", "-r", "--name-only", "main").splitlines() == [
        "README.md",
        "rules/spring/handler.py",
    ]
    assert f"Shipyard-Release: {task_id}" in git(repo, "log", "-1", "--format=%B", "main")

    listed = run_cli(repo_project, "releases", "--json")
    assert listed.returncode == 0, listed.stderr
    (release,) = json.loads(listed.stdout)
    assert release["state"] == "live" and release["target"] == "rules"
    assert release["version"] == git(repo, "rev-parse", "main")

    refused = run_cli(repo_project, "release", "pause", task_id[:12], "--as", "me")
    assert refused.returncode == 5 and "cannot be paused" in refused.stderr

    undone = run_cli(repo_project, "release", "rollback", task_id[:12], "--as", "me")
    assert undone.returncode == 0, undone.stderr
    assert "rolled back" in undone.stdout
    assert git(repo, "ls-tree", "-r", "--name-only", "main").splitlines() == ["README.md"]
    assert git(repo, "log", "-1", "--format=%s", "main").startswith('Revert "')
    assert find_task(rt, task_id).state == "rolled_back"

    shown = run_cli(repo_project, "releases", task_id)
    assert shown.returncode == 0, shown.stderr
    assert "rolled_back" in shown.stdout and "rolled back by me" in shown.stdout


def test_a_replaced_release_cannot_be_rolled_back_and_returns_when_its_successor_is(
    repo_project: Path, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(load_project(repo_project))
    ids = []
    for price in (9.5, 11.0):
        data = {"rule": "spring", "price": price, "delay_ms": 0, "fail_rate": 0}
        task_id = submit(
            rt, rt.jobs.get("price-rule"), [BatchRow(where="t", data=data)], submitted_by="me"
        ).submitted[0]
        assert wait_for_state(rt, task_id, SETTLED | {"rolled_back"}) == "published"
        ids.append(task_id)
    first, second = ids
    states = {
        r["task"]: r["state"]
        for r in json.loads(run_cli(repo_project, "releases", "--json").stdout)
    }
    assert states == {first: "replaced", second: "live"}

    refused = run_cli(repo_project, "release", "rollback", first, "--as", "me")
    assert refused.returncode == 5 and "is replaced" in refused.stderr

    assert run_cli(repo_project, "release", "rollback", second, "--as", "me").returncode == 0
    states = {
        r["task"]: r["state"]
        for r in json.loads(run_cli(repo_project, "releases", "--json").stdout)
    }
    assert states == {first: "live", second: "rolled_back"}
    handler = git(repo_project / "rules.git", "show", "main:rules/spring/handler.py")
    assert "9.5" in handler
