"""The ``git-push`` tool against real bare remotes: a change released into a repository
(or a remote's mirror) by the ``repo`` target, then pushed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from repos_support import GIT_ENV, commit_all, run_git, write
from shipyard.errors import ToolError
from shipyard.release import RepoChangeTarget
from shipyard.tools import GitPushTool, Tool

BRANCH = "shipyard/task-1"


def git_out(repo: Path, *args: str) -> str:
    return run_git(repo, *args).strip()


def remote_head(remote: Path, branch: str) -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        cwd=remote,
        env=GIT_ENV,
        capture_output=True,
        check=False,
    )
    return done.stdout.decode().strip() or None


def release(repo: Path, key: str = "task-1", *, merge_to: str | None = None) -> str:
    """Release a one-file change of ``repo``'s ``main`` as ``shipyard/<key>`` (merged into
    ``merge_to``), the way the publish step does; the release commit."""
    base = git_out(repo, "rev-parse", "main")
    blob = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"],
        cwd=repo,
        env=GIT_ENV,
        input=b"NEW = 1\n",
        capture_output=True,
        check=True,
    ).stdout.decode()
    patch = (
        "diff --git a/new.py b/new.py\nnew file mode 100644\n"
        f"index {'0' * 40}..{blob.strip()}\n--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n"
        "+NEW = 1\n"
    )
    files = {"change.json": json.dumps({"base": base}).encode(), "change.patch": patch.encode()}
    target = RepoChangeTarget("repo:shop", repo, merge_to=merge_to)
    deployed = target.deploy(key=key, path="", files=files, title="Add new.py")
    if merge_to:
        target.promote(key)
    return deployed.version


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare remote with main and a release branch."""
    seed = tmp_path / "seed"
    seed.mkdir()
    run_git(seed, "init", "-q", "-b", "main")
    write(seed, {"README.md": "# Shop\n", "app.py": "x = 1\n"})
    commit_all(seed, "initial")
    bare = tmp_path / "remote.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    run_git(bare, "branch", "release", "main")
    return bare


@pytest.fixture
def work(tmp_path: Path, remote: Path) -> Path:
    """A clone of the remote with main checked out (its ``release`` branch tracked too)."""
    clone = tmp_path / "work"
    run_git(tmp_path, "clone", "-q", str(remote), str(clone))
    run_git(clone, "branch", "release", "origin/release")
    return clone


def args(repo: Path, remote: Path | str, **more: Any) -> dict[str, Any]:
    return {"repository": str(repo), "remote": str(remote), "branch": BRANCH, **more}


def test_git_push_is_a_tool() -> None:
    tool = GitPushTool()
    assert isinstance(tool, Tool)
    assert (tool.name, tool.capability, tool.reversible) == ("git-push", "push", True)


def test_push_to_a_bare_remote_and_again(work: Path, remote: Path) -> None:
    commit = release(work)
    tool = GitPushTool()

    first = tool.call(args(work, remote), key="task-1:push")
    again = tool.call(args(work, remote), key="task-1:push")

    assert (first["pushed"], first["already"]) == ([BRANCH], [])
    assert (again["pushed"], again["already"]) == ([], [BRANCH])
    assert first["commits"] == {BRANCH: commit}
    assert remote_head(remote, BRANCH) == commit
    assert remote_head(remote, "release") == git_out(work, "rev-parse", "main")


def test_push_with_merge_to_pushes_both_branches(work: Path, remote: Path) -> None:
    commit = release(work, merge_to="release")
    main = remote_head(remote, "main")

    result = GitPushTool().call(args(work, remote, merge_to="release"), key="k")

    assert result["pushed"] == [BRANCH, "release"]
    assert remote_head(remote, "release") == commit == remote_head(remote, BRANCH)
    assert remote_head(remote, "main") == main


def test_push_from_a_mirror_to_its_remote_by_name(tmp_path: Path, remote: Path) -> None:
    """Shipyard's own mirror of a remote repository: ``origin`` is a mirror remote there,
    and the explicit refspecs still push just the released branches."""
    mirror = tmp_path / "mirror.git"
    run_git(tmp_path, "clone", "-q", "--mirror", str(remote), str(mirror))
    run_git(mirror, "branch", "scratch", "main")  # a branch the remote must not receive
    commit = release(mirror, merge_to="release")

    result = GitPushTool().call(args(mirror, "origin", merge_to="release"), key="k")

    assert result["pushed"] == [BRANCH, "release"]
    assert remote_head(remote, BRANCH) == commit == remote_head(remote, "release")
    assert remote_head(remote, "scratch") is None


def test_a_push_the_remote_refuses_is_an_error_with_a_hint(
    tmp_path: Path, work: Path, remote: Path
) -> None:
    release(work, merge_to="release")
    other = tmp_path / "other"
    run_git(tmp_path, "clone", "-q", "-b", "release", str(remote), str(other))
    write(other, {"app.py": "x = 2\n"})
    moved = commit_all(other, "someone else's change")
    run_git(other, "push", "-q", "origin", "release")

    with pytest.raises(ToolError, match="refused release") as caught:
        GitPushTool().call(args(work, remote, merge_to="release"), key="k")

    assert "never force-pushes" in caught.value.hint
    assert remote_head(remote, "release") == moved


def test_a_remote_branch_that_already_contains_the_release_is_already(
    tmp_path: Path, work: Path, remote: Path
) -> None:
    tool = GitPushTool()
    release(work, merge_to="release")
    tool.call(args(work, remote, merge_to="release"), key="k")
    run_git(work, "fetch", "-q", "origin")
    other = tmp_path / "other"
    run_git(tmp_path, "clone", "-q", "-b", "release", str(remote), str(other))
    write(other, {"later.txt": "later\n"})
    later = commit_all(other, "a later change on top")
    run_git(other, "push", "-q", "origin", "release")
    run_git(work, "fetch", "-q", "origin")  # the mirror has the remote's objects

    again = tool.call(args(work, remote, merge_to="release"), key="k")

    assert (again["pushed"], again["already"]) == ([], [BRANCH, "release"])
    assert remote_head(remote, "release") == later


def test_compensation_deletes_only_an_unchanged_release_branch(work: Path, remote: Path) -> None:
    release(work, merge_to="release")
    tool = GitPushTool()
    call = args(work, remote, merge_to="release")
    result = tool.call(call, key="k")
    merged = remote_head(remote, "release")

    undone = tool.compensate(call, result, key="k", reason="a later step failed")
    again = tool.compensate(call, result, key="k")

    assert undone["deleted"] is True and undone["reason"] == "a later step failed"
    assert "release on" in undone["note"] and "left as it is" in undone["note"]
    assert remote_head(remote, BRANCH) is None
    assert remote_head(remote, "release") == merged
    assert again["deleted"] is False and "deleted already" in again["note"]


def test_compensation_keeps_a_branch_that_moved(tmp_path: Path, work: Path, remote: Path) -> None:
    release(work)
    tool = GitPushTool()
    result = tool.call(args(work, remote), key="k")
    other = tmp_path / "other"
    run_git(tmp_path, "clone", "-q", "-b", BRANCH, str(remote), str(other))
    write(other, {"more.txt": "more\n"})
    moved = commit_all(other, "more work on the branch")
    run_git(other, "push", "-q", "origin", BRANCH)

    undone = tool.compensate(args(work, remote), result, key="k")

    assert undone["deleted"] is False and "moved" in undone["note"]
    assert remote_head(remote, BRANCH) == moved


def test_compensation_never_deletes_a_branch_outside_shipyard(work: Path, remote: Path) -> None:
    main = remote_head(remote, "main")
    call = {"repository": str(work), "remote": str(remote), "branch": "main"}

    undone = GitPushTool().compensate(call, {"commits": {"main": main}}, key="k")

    assert undone["deleted"] is False
    assert remote_head(remote, "main") == main


def test_a_branch_that_was_not_released_is_an_error(work: Path, remote: Path) -> None:
    with pytest.raises(ToolError, match=f"branch {BRANCH} is not in") as caught:
        GitPushTool().call(args(work, remote), key="k")
    assert "release the change first" in caught.value.hint


def test_an_unreachable_remote_is_an_error_with_a_hint(tmp_path: Path, work: Path) -> None:
    release(work)

    with pytest.raises(ToolError, match="does not appear to be a git repository") as caught:
        GitPushTool().call(args(work, tmp_path / "nowhere.git"), key="k")

    assert "reachable" in caught.value.hint


def test_the_local_repository_hooks_do_not_run(tmp_path: Path, work: Path, remote: Path) -> None:
    witness = tmp_path / "hook-ran"
    hook = work / ".git" / "hooks" / "pre-push"
    hook.write_text(f"#!/bin/sh\ntouch {witness}\nexit 1\n")
    hook.chmod(0o755)
    commit = release(work)

    GitPushTool().call(args(work, remote), key="k")

    assert remote_head(remote, BRANCH) == commit
    assert not witness.exists()
