from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from shipyard.errors import ConfigError, InputError, StateError
from shipyard.release._target import Target
from shipyard.release.targets.git import GitTarget

BASE = {
    "README.md": b"hello\n",
    "pages/old.html": b"<h1>old</h1>\n",
    "pages/style.css": b"body {}\n",
    "other/x.txt": b"x\n",
}
PAGE = {"index.html": b"<h1>Mug</h1>\n", "img/mug.png": b"png"}

ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "LC_ALL": "C",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@localhost",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@localhost",
}


def git(repo: Path, *args: str, stdin: bytes | None = None, index: Path | None = None) -> str:
    env = {**ENV, "GIT_INDEX_FILE": str(index)} if index else ENV
    done = subprocess.run(
        ["git", "-C", str(repo), *args], input=stdin, capture_output=True, env=env, check=True
    )
    return done.stdout.decode()


def rev(repo: Path, ref: str) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"refs/heads/{ref}"],
        capture_output=True,
        env=ENV,
        check=False,
    )
    return done.stdout.decode().strip() or None


def commit(
    repo: Path, files: dict[str, bytes | None], message: str = "change", branch: str = "main"
) -> str:
    """A commit on ``branch`` changing ``files`` (None deletes), made with plumbing."""
    head = rev(repo, branch)
    with tempfile.TemporaryDirectory() as temp:
        index = Path(temp) / "index"
        if head:
            git(repo, "read-tree", head, index=index)
        for name, data in files.items():
            if data is None:
                git(repo, "update-index", "--force-remove", name, index=index)
            else:
                sha = git(repo, "hash-object", "-w", "--stdin", stdin=data).strip()
                git(
                    repo,
                    "update-index",
                    "--add",
                    "--cacheinfo",
                    f"100644,{sha},{name}",
                    index=index,
                )
        tree = git(repo, "write-tree", index=index).strip()
    parents = ["-p", head] if head else []
    new = git(repo, "commit-tree", tree, *parents, "-m", message).strip()
    git(repo, "update-ref", f"refs/heads/{branch}", new)
    return new


def tree(repo: Path, revision: str) -> dict[str, bytes]:
    names = git(repo, "ls-tree", "-r", "-z", "--name-only", revision).split("\0")
    return {
        name: subprocess.run(
            ["git", "-C", str(repo), "show", f"{revision}:{name}"],
            capture_output=True,
            env=ENV,
            check=True,
        ).stdout
        for name in names
        if name
    }


def parents(repo: Path, revision: str) -> list[str]:
    return git(repo, "rev-list", "--parents", "-n", "1", revision).split()[1:]


def count(repo: Path, revision: str) -> int:
    return int(git(repo, "rev-list", "--count", revision))


def message(repo: Path, revision: str) -> str:
    return git(repo, "log", "-1", "--format=%B", revision)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "site.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(path))
    commit(path, dict(BASE), "initial")
    return path


@pytest.fixture
def target(repo: Path) -> GitTarget:
    return GitTarget("site", repo)


@pytest.fixture
def merging(repo: Path) -> GitTarget:
    return GitTarget("site", repo, merge="merge-commit")


def test_git_target_is_a_target(target: GitTarget) -> None:
    assert isinstance(target, Target)
    assert (target.kind, target.served) == ("git", False)


def test_deploy_replaces_the_folder_on_a_new_branch_and_leaves_main(
    repo: Path, target: GitTarget
) -> None:
    main = rev(repo, "main")

    deployed = target.deploy(key="k1", path="pages", files=PAGE, title="Mug  page\nnew")

    assert deployed.already is False
    assert deployed.url_path == "shipyard/k1"
    assert deployed.version == rev(repo, "shipyard/k1")
    assert tree(repo, "shipyard/k1") == {
        "README.md": b"hello\n",
        "other/x.txt": b"x\n",
        "pages/index.html": b"<h1>Mug</h1>\n",
        "pages/img/mug.png": b"png",
    }
    assert parents(repo, "shipyard/k1") == [main]
    assert message(repo, "shipyard/k1") == (
        "Mug page new\n\nShipyard-Release: k1\nShipyard-Path: pages\n\n"
    )
    assert rev(repo, "main") == main
    assert tree(repo, "main") == BASE


def test_deploy_to_the_root_replaces_the_whole_tree(repo: Path, target: GitTarget) -> None:
    target.deploy(key="k1", path="/", files={"a.txt": b"a"})

    assert tree(repo, "shipyard/k1") == {"a.txt": b"a"}
    assert message(repo, "shipyard/k1").startswith("shipyard release k1\n\n")


def test_deploying_a_key_twice_writes_nothing(repo: Path, target: GitTarget) -> None:
    first = target.deploy(key="k1", path="pages", files=PAGE)
    objects = git(repo, "count-objects", "-v")

    again = target.deploy(key="k1", path="pages", files={"index.html": b"other"})

    assert again.already is True
    assert again.version == first.version == rev(repo, "shipyard/k1")
    assert tree(repo, "shipyard/k1")["pages/index.html"] == b"<h1>Mug</h1>\n"
    assert git(repo, "count-objects", "-v") == objects


def test_deploy_refuses_a_foreign_branch_of_the_same_name(repo: Path, target: GitTarget) -> None:
    commit(repo, {"x": b"y"}, "someone else's work", branch="shipyard/k1")

    with pytest.raises(StateError, match="not Shipyard's release"):
        target.deploy(key="k1", path="pages", files=PAGE)


def test_promote_fast_forwards_main(repo: Path, target: GitTarget) -> None:
    deployed = target.deploy(key="k1", path="pages", files=PAGE)

    promoted = target.promote("k1")

    assert promoted.already is False
    assert promoted.version == deployed.version == rev(repo, "main")
    assert count(repo, "main") == 2
    assert tree(repo, "main")["pages/index.html"] == b"<h1>Mug</h1>\n"
    assert rev(repo, "shipyard/k1") == deployed.version
    again = target.promote("k1")
    assert (again.already, again.version) == (True, deployed.version)


def test_promote_with_merge_commit_records_two_parents(repo: Path, merging: GitTarget) -> None:
    main = rev(repo, "main")
    deployed = merging.deploy(key="k1", path="pages", files=PAGE)

    promoted = merging.promote("k1")

    assert promoted.version == rev(repo, "main")
    assert parents(repo, "main") == [main, deployed.version]
    assert message(repo, "main").endswith("\n\nShipyard-Release: k1\n\n")
    assert tree(repo, "main") == tree(repo, "shipyard/k1")
    assert merging.promote("k1").already is True
    assert count(repo, "main") == 3


def test_fast_forward_after_main_moved_is_refused(repo: Path, target: GitTarget) -> None:
    target.deploy(key="k1", path="pages", files=PAGE)
    moved = commit(repo, {"other/x.txt": b"x2\n"})

    with pytest.raises(StateError, match="moved on") as caught:
        target.promote("k1")

    assert "merge-commit" in caught.value.hint
    assert rev(repo, "main") == moved


def test_merge_commit_after_main_moved_keeps_both_changes(repo: Path, merging: GitTarget) -> None:
    deployed = merging.deploy(key="k1", path="pages", files=PAGE)
    moved = commit(repo, {"other/x.txt": b"x2\n"})

    merging.promote("k1")

    assert parents(repo, "main") == [moved, deployed.version]
    files = tree(repo, "main")
    assert files["other/x.txt"] == b"x2\n"
    assert files["pages/index.html"] == b"<h1>Mug</h1>\n"
    assert "pages/old.html" not in files


def test_conflicting_merge_names_the_path(repo: Path, merging: GitTarget) -> None:
    merging.deploy(key="k1", path="pages", files={"style.css": b"new {}\n"})
    moved = commit(repo, {"pages/style.css": b"theirs {}\n"})

    with pytest.raises(StateError, match=re.escape("pages/style.css")) as caught:
        merging.promote("k1")

    assert caught.value.details["paths"] == ["pages/style.css"]
    assert rev(repo, "main") == moved


def test_withdraw_reverts_a_fast_forward_once(repo: Path, target: GitTarget) -> None:
    target.deploy(key="k1", path="pages", files=PAGE, title="Mug page")
    target.promote("k1")
    assert target.releases() == ["k1"]

    assert target.withdraw("k1") == target.live_version()

    assert tree(repo, "main") == BASE
    assert count(repo, "main") == 3
    assert git(repo, "log", "-1", "--format=%s", "main") == 'Revert "Mug page"\n'
    trailer = git(repo, "log", "-1", "--format=%(trailers:key=Shipyard-Revert,valueonly)", "main")
    assert trailer.strip() == "k1"
    assert target.releases() == []
    assert target.withdraw("k1") is None
    assert count(repo, "main") == 3
    with pytest.raises(StateError, match="withdrawn"):
        target.promote("k1")


def test_withdraw_reverts_a_merge_and_keeps_later_changes(repo: Path, merging: GitTarget) -> None:
    merging.deploy(key="k1", path="pages", files=PAGE)
    merge = merging.promote("k1").version
    commit(repo, {"other/x.txt": b"later\n"})

    assert merging.withdraw("k1") == merging.live_version()

    assert tree(repo, "main") == {**BASE, "other/x.txt": b"later\n"}
    assert f"This reverts commit {merge}." in message(repo, "main")
    assert merging.withdraw("k1") is None


def test_withdraw_conflicting_with_later_changes_names_the_path(
    repo: Path, target: GitTarget
) -> None:
    target.deploy(key="k1", path="pages", files=PAGE)
    target.promote("k1")
    later = commit(repo, {"pages/index.html": b"<h1>edited</h1>\n"})

    with pytest.raises(StateError, match=re.escape("pages/index.html")):
        target.withdraw("k1")

    assert rev(repo, "main") == later


def test_withdraw_of_an_unpromoted_key_does_nothing(repo: Path, target: GitTarget) -> None:
    main = rev(repo, "main")
    target.deploy(key="k1", path="pages", files=PAGE)

    assert target.withdraw("k1") is None
    assert target.withdraw("never") is None
    assert rev(repo, "main") == main


def test_abort_deletes_the_candidate_once(repo: Path, target: GitTarget) -> None:
    main = rev(repo, "main")
    target.deploy(key="k1", path="pages", files=PAGE)

    assert target.abort("k1") is True

    assert rev(repo, "shipyard/k1") is None
    assert rev(repo, "main") == main
    assert target.abort("k1") is False
    assert target.health("k1") == f"branch shipyard/k1 does not exist in {repo}"


def test_abort_after_promotion_keeps_the_branch(repo: Path, target: GitTarget) -> None:
    deployed = target.deploy(key="k1", path="pages", files=PAGE)
    target.promote("k1")

    assert target.abort("k1") is False

    assert rev(repo, "shipyard/k1") == deployed.version
    assert rev(repo, "main") == deployed.version


def test_shift_accepts_only_none_or_all(target: GitTarget) -> None:
    target.shift("k1", 0)
    target.shift("k1", 100)

    with pytest.raises(StateError) as caught:
        target.shift("k1", 10)
    assert "without stages" in caught.value.hint


def test_health(repo: Path, target: GitTarget) -> None:
    assert target.health("k1") == f"branch shipyard/k1 does not exist in {repo}"
    target.deploy(key="k1", path="pages", files=PAGE)
    assert target.health("k1") is None
    commit(repo, {"x": b"y"}, "on top", branch="shipyard/k1")
    assert "not Shipyard's release" in (target.health("k1") or "")


def test_live_version_and_releases(repo: Path, merging: GitTarget) -> None:
    assert merging.live_version() == rev(repo, "main")
    merging.deploy(key="k1", path="a", files=PAGE)
    merging.deploy(key="k2", path="b", files=PAGE)
    merging.promote("k2")
    merging.promote("k1")

    assert merging.releases() == ["k2", "k1"]
    assert merging.live_version() == rev(repo, "main")
    assert GitTarget("site", repo, branch="nope").live_version() is None


def test_a_branch_moved_concurrently_is_reported_not_overwritten(
    repo: Path, merging: GitTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    merging.deploy(key="k1", path="pages", files=PAGE)
    write = merging._commit_tree
    moved: list[str] = []

    def racing(tree: str, parents: list[str], message: str) -> str:
        moved.append(commit(repo, {"other/x.txt": b"race\n"}))
        return write(tree, parents, message)

    monkeypatch.setattr(merging, "_commit_tree", racing)

    with pytest.raises(StateError, match="moved while Shipyard was updating it"):
        merging.promote("k1")

    assert rev(repo, "main") == moved[0]


def test_commits_ignore_the_callers_git_identity_and_config(
    repo: Path, target: GitTarget, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gitconfig").write_text("[user]\n\tname = Global\n\temail = global@example.com\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Intruder")

    target.deploy(key="k1", path="pages", files=PAGE)
    git(repo, "config", "user.name", "Repo Owner")
    GitTarget("site", repo).deploy(key="k2", path="pages", files=PAGE)

    author = "--format=%an <%ae> / %cn <%ce>"
    assert git(repo, "log", "-1", author, "shipyard/k1") == (
        "Shipyard <shipyard@localhost> / Shipyard <shipyard@localhost>\n"
    )
    assert git(repo, "log", "-1", author, "shipyard/k2") == (
        "Repo Owner <shipyard@localhost> / Repo Owner <shipyard@localhost>\n"
    )


def test_a_checked_out_branch_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "README.md").write_text("hello\n")
    git(work, "add", "README.md")
    git(work, "commit", "-q", "-m", "initial")
    target = GitTarget("site", work)

    with pytest.raises(StateError, match="does not touch a working tree") as caught:
        target.deploy(key="k1", path="pages", files=PAGE)

    assert "bare repository" in caught.value.hint
    assert rev(work, "shipyard/k1") is None
    with pytest.raises(StateError, match="checked out"):
        target.abort("k1")


def test_another_branch_of_a_work_tree_is_released_without_touching_it(tmp_path: Path) -> None:
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "README.md").write_text("hello\n")
    git(work, "add", "README.md")
    git(work, "commit", "-q", "-m", "initial")
    git(work, "branch", "live")
    index = (work / ".git" / "index").read_bytes()
    target = GitTarget("site", work, branch="live")

    target.deploy(key="k1", path="pages", files=PAGE)
    target.promote("k1")

    assert tree(work, "live")["pages/index.html"] == b"<h1>Mug</h1>\n"
    assert git(work, "status", "--porcelain") == ""
    assert git(work, "symbolic-ref", "HEAD") == "refs/heads/main\n"
    assert (work / ".git" / "index").read_bytes() == index
    assert sorted(p.name for p in work.iterdir()) == [".git", "README.md"]


def test_a_missing_repository_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.git"

    with pytest.raises(ConfigError, match=re.escape(str(missing))) as caught:
        GitTarget("site", missing).deploy(key="k1", path="pages", files=PAGE)

    assert f"git init --bare {missing}" in caught.value.hint


def test_a_folder_that_is_not_a_repository_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a git repository"):
        GitTarget("site", tmp_path).deploy(key="k1", path="pages", files=PAGE)


def test_a_missing_branch_is_a_config_error(repo: Path) -> None:
    with pytest.raises(ConfigError, match="branch 'release' does not exist") as caught:
        GitTarget("site", repo, branch="release").deploy(key="k1", path="pages", files=PAGE)

    assert "release" in caught.value.hint
    assert rev(repo, "shipyard/k1") is None


@pytest.mark.parametrize("path", ["../up", "pages/../../up", "/etc"])
def test_paths_leaving_the_repository_are_refused(repo: Path, target: GitTarget, path: str) -> None:
    with pytest.raises(InputError, match="leaves the repository"):
        target.deploy(key="k1", path=path, files=PAGE)

    assert rev(repo, "shipyard/k1") is None


@pytest.mark.parametrize("name", ["../x.html", "/abs.html", ""])
def test_file_names_leaving_the_folder_are_refused(target: GitTarget, name: str) -> None:
    with pytest.raises(InputError, match="not a path inside the release folder"):
        target.deploy(key="k1", path="pages", files={name: b"x"})


def test_a_key_that_cannot_name_a_branch_is_refused(target: GitTarget) -> None:
    with pytest.raises(InputError, match="cannot name a git branch"):
        target.deploy(key="bad key..", path="pages", files=PAGE)
