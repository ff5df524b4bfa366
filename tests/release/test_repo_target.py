"""The ``repo`` target on real repositories: a user's working repository with ``main``
checked out (a dirty working tree and index included), changes made in clones of it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from repos_support import GIT_ENV, commit_all, run_git, write
from shipyard.errors import ConfigError, InputError, StateError
from shipyard.release import Promoted, RepoChangeTarget, Target
from shipyard.release.targets.repo import commit_message
from shipyard.tools import PublishTool

LOGO = bytes(range(256)) * 4
BASE: dict[str, str | bytes] = {
    "README.md": "# Shop\n",
    "src/app.py": "def total(items):\n    return sum(items)\n",
    "src/old.py": "OLD = 1\n",
    "assets/logo.bin": LOGO,
    "docs/notes.txt": "notes\n",
}
EDITS: dict[str, bytes | None] = {
    "src/app.py": b"def total(items):\n    return sum(i for i in items if i > 0)\n",
    "src/old.py": None,
    "src/new.py": b"NEW = 2\n",
    "assets/logo.bin": LOGO[::-1],
    "assets/icon.bin": b"\x00\xff\xfe binary \x00",
}
GOAL = "Ignore negative amounts in total()"
AUTHOR = "Release Bot <bot@example.com>"


def git_out(repo: Path, *args: str) -> str:
    return run_git(repo, *args).strip()


def rev(repo: Path, ref: str) -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{ref}"],
        cwd=repo,
        env=GIT_ENV,
        capture_output=True,
        check=False,
    )
    return done.stdout.decode().strip() or None


def show(repo: Path, revision: str, name: str) -> bytes:
    return subprocess.run(
        ["git", "show", f"{revision}:{name}"], cwd=repo, env=GIT_ENV, capture_output=True
    ).stdout


def files_at(repo: Path, revision: str) -> dict[str, bytes]:
    names = git_out(repo, "ls-tree", "-r", "--name-only", revision).splitlines()
    return {name: show(repo, revision, name) for name in names}


def refs(repo: Path) -> str:
    return run_git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


def trailer(repo: Path, revision: str, key: str) -> str:
    return git_out(repo, "log", "-1", f"--format=%(trailers:key={key},valueonly)", revision)


def make_change(
    tmp: Path, repo: Path, edits: Mapping[str, bytes | None], *, base: str = "main"
) -> tuple[dict[str, bytes], str]:
    """A change to ``base`` of ``repo`` as a change artifact's files (made in a clone, the
    way a working copy makes it), and the tree it produces."""
    commit = git_out(repo, "rev-parse", f"{base}^{{commit}}")
    edit = tmp / f"edit-{len(list(tmp.glob('edit-*')))}"
    run_git(tmp, "clone", "-q", "--no-checkout", str(repo), str(edit))
    run_git(edit, "checkout", "-q", "--detach", commit)
    for name, data in edits.items():
        if data is None:
            (edit / name).unlink()
        else:
            write(edit, {name: data})
    run_git(edit, "add", "-A")
    patch = subprocess.run(
        ["git", "diff", "--cached", "--binary", "--full-index", commit],
        cwd=edit,
        env=GIT_ENV,
        capture_output=True,
        check=True,
    ).stdout
    tree = git_out(edit, "write-tree")
    summary = {"repo": "shop", "base": commit, "tree": tree, "goal": GOAL}
    return {"change.json": json.dumps(summary).encode(), "change.patch": patch}, tree


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    """The user's repository: main checked out, a branch ``release`` beside it, a staged
    edit, an unstaged edit and an untracked file; checked untouched after each test."""
    repo = tmp_path / "shop"
    repo.mkdir()
    run_git(repo, "init", "-q", "-b", "main")
    write(repo, BASE)
    commit_all(repo, "initial")
    run_git(repo, "branch", "release")
    write(repo, {"README.md": "# Shop (draft)\n"})
    run_git(repo, "add", "README.md")
    write(repo, {"docs/notes.txt": "notes, unsaved\n", "scratch.txt": "mine\n"})
    status, head = run_git(repo, "status", "--porcelain"), git_out(repo, "rev-parse", "HEAD")
    on_disk = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}
    assert status.count("\n") == 3  # the user's own work is there to be kept
    yield repo
    assert run_git(repo, "status", "--porcelain") == status
    assert git_out(repo, "rev-parse", "HEAD") == head
    assert git_out(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    now = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}
    assert now == on_disk


@pytest.fixture
def target(work: Path) -> RepoChangeTarget:
    return RepoChangeTarget("repo:shop", work, author=AUTHOR)


def test_a_repo_target_is_a_target(target: RepoChangeTarget) -> None:
    assert isinstance(target, Target)
    assert (target.kind, target.served) == ("repo", False)


def test_deploy_writes_one_commit_on_the_base_with_the_patched_tree(
    tmp_path: Path, work: Path, target: RepoChangeTarget
) -> None:
    base = git_out(work, "rev-parse", "main")
    files, tree = make_change(tmp_path, work, EDITS)
    before = refs(work)

    deployed = target.deploy(
        key="task-1", path="", files=files, title=GOAL, artifact="sha256:abc123"
    )

    assert (deployed.url_path, deployed.already) == ("shipyard/task-1", False)
    assert deployed.version == rev(work, "shipyard/task-1")
    assert git_out(work, "rev-list", "--parents", "-n", "1", deployed.version).split() == [
        deployed.version,
        base,
    ]
    assert git_out(work, "rev-list", "--count", f"{base}..shipyard/task-1") == "1"
    assert git_out(work, "rev-parse", "shipyard/task-1^{tree}") == tree
    content = files_at(work, "shipyard/task-1")
    assert "src/old.py" not in content
    assert content["src/new.py"] == b"NEW = 2\n"
    assert content["src/app.py"] == EDITS["src/app.py"]
    assert content["assets/logo.bin"] == LOGO[::-1]
    assert content["assets/icon.bin"] == EDITS["assets/icon.bin"]
    assert content["README.md"] == b"# Shop\n"  # the user's staged edit is not in it
    assert git_out(work, "log", "-1", "--format=%s", deployed.version) == GOAL
    assert trailer(work, deployed.version, "Shipyard-Task") == "task-1"
    assert trailer(work, deployed.version, "Shipyard-Artifact") == "sha256:abc123"
    assert trailer(work, deployed.version, "Shipyard-Release") == "task-1"
    assert git_out(work, "log", "-1", "--format=%an <%ae>|%cn <%ce>", deployed.version) == (
        f"{AUTHOR}|{AUTHOR}"
    )
    new_refs = set(refs(work).splitlines()) - set(before.splitlines())
    assert new_refs == {f"refs/heads/shipyard/task-1 {deployed.version}"}


def test_a_repository_named_by_its_git_folder_works_the_same(tmp_path: Path, work: Path) -> None:
    files, tree = make_change(tmp_path, work, {"src/new.py": b"x = 1\n"})

    deployed = RepoChangeTarget("repo:shop", work / ".git").deploy(
        key="task-1", path="", files=files
    )

    assert git_out(work, "rev-parse", f"{deployed.version}^{{tree}}") == tree
    assert git_out(work, "log", "-1", "--format=%s", deployed.version) == "Shipyard change task-1"


def test_deploying_twice_makes_one_commit(
    tmp_path: Path, work: Path, target: RepoChangeTarget
) -> None:
    files, _ = make_change(tmp_path, work, EDITS)
    first = target.deploy(key="task-1", path="", files=files, title=GOAL)
    objects = run_git(work, "count-objects", "-v")

    # After a crash the step runs again, in a new process.
    again = RepoChangeTarget("repo:shop", work, author=AUTHOR).deploy(
        key="task-1", path="", files=files, title=GOAL
    )

    assert again.already is True
    assert again.version == first.version == rev(work, "shipyard/task-1")
    assert run_git(work, "count-objects", "-v") == objects
    assert target.health("task-1") is None


def test_a_patch_that_does_not_give_the_checked_tree_is_refused(
    tmp_path: Path, work: Path, target: RepoChangeTarget
) -> None:
    files, _ = make_change(tmp_path, work, EDITS)
    _, other_tree = make_change(tmp_path, work, {"src/new.py": b"NEW = 3\n"})
    summary = json.loads(files["change.json"])
    lying = {"change.json": json.dumps({**summary, "tree": other_tree}).encode()}
    before = refs(work)

    with pytest.raises(StateError, match="does not reproduce the checked tree") as caught:
        target.deploy(key="task-1", path="", files={**files, **lying})

    assert caught.value.details["expected"] == other_tree
    assert refs(work) == before
    assert target.health("task-1") is not None


def test_a_patch_that_does_not_apply_is_refused(
    tmp_path: Path, work: Path, target: RepoChangeTarget
) -> None:
    files, _ = make_change(tmp_path, work, EDITS)
    empty = run_git(work, "mktree", stdin=b"").strip()
    elsewhere = git_out(work, "commit-tree", empty, "-m", "an empty history")
    before = refs(work)

    with pytest.raises(StateError, match="does not apply"):
        target.deploy(key="task-1", path="", files=_on_base(files, elsewhere))

    assert refs(work) == before


def test_a_base_the_repository_lacks_is_refused_by_name(
    tmp_path: Path, work: Path, target: RepoChangeTarget
) -> None:
    files, _ = make_change(tmp_path, work, EDITS)
    missing = "0123456789abcdef" * 2 + "01234567"

    with pytest.raises(StateError, match=missing):
        target.deploy(key="task-1", path="", files=_on_base(files, missing))

    assert rev(work, "shipyard/task-1") is None


def test_a_foreign_branch_of_the_same_name_is_left_alone(
    tmp_path: Path, work: Path, target: RepoChangeTarget
) -> None:
    files, _ = make_change(tmp_path, work, EDITS)
    run_git(work, "branch", "shipyard/task-1", "main")
    theirs = rev(work, "shipyard/task-1")

    with pytest.raises(StateError, match="not Shipyard's release") as caught:
        target.deploy(key="task-1", path="", files=files, title=GOAL)

    assert "git branch -D shipyard/task-1" in caught.value.hint
    assert rev(work, "shipyard/task-1") == theirs


def test_an_artifact_that_is_not_a_change_is_refused(target: RepoChangeTarget) -> None:
    with pytest.raises(InputError, match=r"change\.json and change\.patch"):
        target.deploy(key="task-1", path="", files={"index.html": b"<h1>"})
    with pytest.raises(InputError, match="not a commit id"):
        target.deploy(
            key="task-1",
            path="",
            files={"change.json": b'{"base": "main"}', "change.patch": b""},
        )


def test_promote_without_merge_to_names_the_branch_and_moves_nothing(
    tmp_path: Path, work: Path, target: RepoChangeTarget
) -> None:
    files, _ = make_change(tmp_path, work, EDITS)
    assert target.health("task-1") == f"branch shipyard/task-1 does not exist in {work}"
    deployed = target.deploy(key="task-1", path="", files=files, title=GOAL)
    before = refs(work)

    promoted = target.promote("task-1")

    assert promoted == Promoted(key="task-1", url_path="shipyard/task-1", version=deployed.version)
    assert refs(work) == before
    assert target.withdraw("task-1") is None
    assert refs(work) == before
    assert target.health("task-1") is None


def test_promote_before_deploy_is_refused(target: RepoChangeTarget) -> None:
    with pytest.raises(StateError, match="was not deployed"):
        target.promote("task-1")


def test_merge_to_fast_forwards_and_withdraw_reverts(tmp_path: Path, work: Path) -> None:
    target = RepoChangeTarget("repo:shop", work, merge_to="release", author=AUTHOR)
    files, _ = make_change(tmp_path, work, EDITS)
    base = git_out(work, "rev-parse", "main")
    deployed = target.deploy(key="task-1", path="", files=files, title=GOAL)

    promoted = target.promote("task-1")

    assert promoted.version == deployed.version == rev(work, "release")
    assert promoted.url_path == "shipyard/task-1"
    assert target.promote("task-1").already is True
    assert rev(work, "main") == base

    reverted = target.withdraw("task-1")

    assert reverted is not None and reverted == rev(work, "release")
    assert git_out(work, "rev-parse", "release^{tree}") == git_out(work, "rev-parse", "main^{tree}")
    assert files_at(work, "release")["src/old.py"] == b"OLD = 1\n"
    assert trailer(work, "release", "Shipyard-Revert") == "task-1"
    assert git_out(work, "log", "-1", "--format=%an", "release") == "Release Bot"
    assert target.withdraw("task-1") is None
    assert rev(work, "release") == reverted


def test_merge_to_with_a_merge_commit_keeps_the_branch_own_changes(
    tmp_path: Path, work: Path
) -> None:
    target = RepoChangeTarget("repo:shop", work, merge_to="release", merge="merge-commit")
    files, _ = make_change(tmp_path, work, EDITS)
    deployed = target.deploy(key="task-1", path="", files=files, title=GOAL)
    moved = _commit_on(work, "release", "docs/notes.txt", b"release notes\n")

    promoted = target.promote("task-1")

    assert promoted.version == rev(work, "release")
    parents = git_out(work, "rev-list", "--parents", "-n", "1", "release").split()[1:]
    assert parents == [moved, deployed.version]
    merged = files_at(work, "release")
    assert merged["docs/notes.txt"] == b"release notes\n"
    assert merged["src/new.py"] == b"NEW = 2\n"
    assert target.withdraw("task-1") is not None
    back = files_at(work, "release")
    assert "src/new.py" not in back and back["docs/notes.txt"] == b"release notes\n"


def test_fast_forward_is_refused_when_merge_to_moved(tmp_path: Path, work: Path) -> None:
    target = RepoChangeTarget("repo:shop", work, merge_to="release")
    files, _ = make_change(tmp_path, work, EDITS)
    target.deploy(key="task-1", path="", files=files, title=GOAL)
    moved = _commit_on(work, "release", "docs/notes.txt", b"release notes\n")

    with pytest.raises(StateError, match="moved on") as caught:
        target.promote("task-1")

    assert "merge-commit" in caught.value.hint and "[repos.shop]" in caught.value.hint
    assert rev(work, "release") == moved


def test_a_checked_out_merge_to_is_refused_with_a_hint(tmp_path: Path, work: Path) -> None:
    files, _ = make_change(tmp_path, work, EDITS)
    before = refs(work)
    merging = RepoChangeTarget("repo:shop", work, merge_to="main")

    with pytest.raises(StateError, match="checked out") as caught:
        merging.deploy(key="task-1", path="", files=files, title=GOAL)

    assert "merge_to in [repos.shop]" in caught.value.hint
    assert refs(work) == before
    # Released without merge_to first, then promoted into main: refused just the same.
    RepoChangeTarget("repo:shop", work).deploy(key="task-1", path="", files=files, title=GOAL)
    with pytest.raises(StateError, match="checked out"):
        merging.promote("task-1")
    assert rev(work, "main") == git_out(work, "rev-parse", "HEAD")


def test_a_bad_author_is_a_config_error(work: Path) -> None:
    with pytest.raises(ConfigError, match="Name <email>"):
        RepoChangeTarget("repo:shop", work, author="just a name")


def test_without_an_author_the_repository_own_user_commits(tmp_path: Path, work: Path) -> None:
    run_git(work, "config", "user.name", "Repo Owner")
    run_git(work, "config", "user.email", "owner@example.com")
    files, _ = make_change(tmp_path, work, {"src/new.py": b"x = 1\n"})

    deployed = RepoChangeTarget("repo:shop", work).deploy(key="task-1", path="", files=files)

    assert git_out(work, "log", "-1", "--format=%an <%ae>", deployed.version) == (
        "Repo Owner <owner@example.com>"
    )


def test_the_commit_message_is_the_goal_cut_to_a_subject() -> None:
    goal = (
        "Make the checkout refuse orders whose reserved quantity exceeds the free stock, "
        "and say which item ran out\n\nSee the incident of last week."
    )

    message = commit_message(goal, "task-9", "sha256:ff")

    subject, blank, *_ = message.split("\n")
    assert len(subject) <= 72 and subject.endswith("...") and blank == ""
    assert goal.startswith(subject.removesuffix("...").rstrip())
    assert message.endswith(
        f"{goal}\n\nShipyard-Task: task-9\nShipyard-Artifact: sha256:ff\nShipyard-Release: task-9\n"
    )
    assert commit_message("Fix it", "k") == ("Fix it\n\nShipyard-Task: k\nShipyard-Release: k\n")


def test_publish_releases_the_change_once(tmp_path: Path, work: Path) -> None:
    """Through the journalled publish tool: deploy and promote, the artifact recorded."""
    files, tree = make_change(tmp_path, work, EDITS)
    target = RepoChangeTarget("repo:shop", work, merge_to="release")
    tool = PublishTool(lambda name: target, lambda artifact: files)
    args = {
        "target": "repo:shop",
        "path": "",
        "title": GOAL,
        "artifact": "sha256:0011",
        "release_key": "task-1",
    }

    first = tool.call(args, key="task-1:publish")
    again = tool.call(args, key="task-1:publish")

    assert first["version"] == again["version"] == rev(work, "release")
    assert (first["already_live"], again["already_live"]) == (False, True)
    assert trailer(work, "shipyard/task-1", "Shipyard-Artifact") == "sha256:0011"
    assert git_out(work, "rev-parse", "release^{tree}") == tree
    assert tool.compensate(args, first, key="task-1:publish")["withdrawn"] is True
    assert git_out(work, "rev-parse", "release^{tree}") == git_out(work, "rev-parse", "main^{tree}")


def _commit_on(repo: Path, branch: str, name: str, data: bytes) -> str:
    """A commit on ``branch`` (not checked out) changing one file, made with plumbing."""
    blob = (
        subprocess.run(
            ["git", "hash-object", "-w", "--stdin"],
            cwd=repo,
            env=GIT_ENV,
            input=data,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    index = repo / ".git" / "test-index"
    env = {**GIT_ENV, "GIT_INDEX_FILE": str(index)}
    for args in (
        ["read-tree", branch],
        ["update-index", "--add", "--cacheinfo", f"100644,{blob},{name}"],
    ):
        subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, check=True)
    tree = (
        subprocess.run(["git", "write-tree"], cwd=repo, env=env, capture_output=True, check=True)
        .stdout.decode()
        .strip()
    )
    index.unlink()
    commit = git_out(repo, "commit-tree", tree, "-p", branch, "-m", "on the branch")
    run_git(repo, "update-ref", f"refs/heads/{branch}", commit)
    return commit


def _on_base(files: Mapping[str, bytes], base: str) -> dict[str, bytes]:
    """The change's files with its summary naming another base."""
    summary = {**json.loads(files["change.json"]), "base": base}
    return {**files, "change.json": json.dumps(summary).encode()}
