"""Working copies and changes: the user's repository is never touched; a change is every file
added, modified or deleted against the base (untracked ones too, ignored ones not), as
patches that apply and a tree id that matches; what a generator may not do refuses it."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from repos_support import GIT_ENV, commit_all, copy_of, open_source, run_git, write
from shipyard.errors import InputError, StateError
from shipyard.repos import (
    Change,
    ChangeLimits,
    WorkingCopy,
    changes,
    create_working_copy,
    read_base_file,
    remove_working_copy,
    resolve_base,
    working_files,
)

FILES = {
    "README.md": "# Shop\n",
    ".gitignore": "*.log\nbuild/\n",
    "shop/__init__.py": "",
    "shop/cart.py": "def total(items):\n    return sum(items)\n",
    "shop/tax.py": "RATE = 0.2\n",
    "data/big.bin": b"\0" * 5000,
}


def snapshot(repo: Path) -> dict[str, str]:
    """What a user would notice: branches, HEAD, index, status, the working tree's files."""
    index = (repo / ".git" / "index").read_bytes()
    files = {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }
    return {
        "refs": run_git(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
        "head": run_git(repo, "symbolic-ref", "HEAD"),
        "index": hashlib.sha256(index).hexdigest(),
        "status": run_git(repo, "status", "--porcelain=v1", "--untracked-files=all"),
        "files": repr(files),
        "worktrees": run_git(repo, "worktree", "list", "--porcelain"),
        "config": (repo / ".git" / "config").read_text(),
    }


def by_path(change: Change) -> dict[str, tuple[str, int, int]]:
    return {f.path: (f.status, f.lines_added, f.lines_removed) for f in change.files}


def rules(change: Change) -> list[str]:
    return [f.rule for f in change.findings]


def test_the_users_repository_stays_exactly_as_it_was(project: Path, make_repo) -> None:
    repo = make_repo(FILES)
    run_git(repo, "branch", "feature")
    write(repo, {"shop/tax.py": "RATE = 0.25\n", "notes.txt": "mine\n", "x.log": "log\n"})
    run_git(repo, "add", "shop/tax.py")  # a staged change, plus untracked and ignored files
    before = snapshot(repo)
    copy = copy_of(project, repo)
    write(copy.path, {"shop/cart.py": "def total(items):\n    return 0\n", "new.py": "x = 1\n"})
    (copy.path / "shop" / "tax.py").unlink()
    run_git(copy.path, "checkout", "-q", "-b", "agent-branch")
    run_git(copy.path, "add", "-A")
    run_git(copy.path, "commit", "-q", "-m", "agent")
    change = changes(copy)
    assert by_path(change) == {
        "new.py": ("added", 1, 0),
        "shop/cart.py": ("modified", 1, 1),
        "shop/tax.py": ("deleted", 0, 1),
    }
    remove_working_copy(copy)
    assert snapshot(repo) == before
    assert not copy.root.exists()


def test_a_copy_is_the_base_commit_not_the_users_working_tree(project: Path, make_repo) -> None:
    repo = make_repo(FILES)
    write(repo, {"shop/tax.py": "RATE = 0.3\n", "scratch.py": "print()\n"})
    copy = copy_of(project, repo)
    assert (copy.path / "shop" / "tax.py").read_text() == "RATE = 0.2\n"
    assert not (copy.path / "scratch.py").exists()
    assert copy.base == run_git(repo, "rev-parse", "HEAD").strip()
    assert run_git(copy.path, "rev-parse", "HEAD").strip() == copy.base  # git works inside
    assert run_git(copy.path, "remote") == ""  # and has no remote to push to
    assert changes(copy).empty and not changes(copy).findings
    assert changes(copy).tree == run_git(repo, "rev-parse", "HEAD^{tree}").strip()
    assert working_files(copy) == sorted(
        [
            "README.md",
            ".gitignore",
            "data/big.bin",
            "shop/__init__.py",
            "shop/cart.py",
            "shop/tax.py",
        ]
    )


def test_changes_count_untracked_files_and_leave_ignored_ones_out(project: Path, make_repo) -> None:
    copy = copy_of(project, make_repo(FILES))
    write(copy.path, {
        "shop/cart.py": "def total(items):\n    # sum\n    return sum(items)\n",
        "shop/discount.py": "def apply(x):\n    return x\n",
        "debug.log": "noise\n",
        "build/out.py": "x = 1\n",
        "docs/guide.md": "# Guide\n\nhello\n",
    })  # fmt: skip
    (copy.path / "README.md").unlink()
    change = changes(copy)
    assert by_path(change) == {
        "README.md": ("deleted", 0, 1),
        "docs/guide.md": ("added", 3, 0),
        "shop/cart.py": ("modified", 1, 0),
        "shop/discount.py": ("added", 2, 0),
    }
    assert (change.lines_added, change.lines_removed) == (6, 1)
    assert "debug.log" not in working_files(copy) and "docs/guide.md" in working_files(copy)
    cart = next(f for f in change.files if f.path == "shop/cart.py")
    assert cart.patch.startswith("diff --git a/shop/cart.py b/shop/cart.py\n")
    assert "+    # sum\n" in cart.patch and cart.mode == "100644"
    assert not change.refused


def test_the_patch_applies_to_the_base_and_gives_the_same_tree(
    project: Path, make_repo, tmp_path: Path
) -> None:
    repo = make_repo(FILES)
    copy = copy_of(project, repo)
    write(copy.path, {
        "shop/cart.py": "def total(items):\n    return sum(items) * 2\n",
        "latin.txt": "caf\xe9\n".encode("latin-1"),
        "data/big.bin": b"\1" * 4000,
        "run.sh": "#!/bin/sh\necho hi\n",
    })  # fmt: skip
    os.chmod(copy.path / "run.sh", 0o755)
    os.symlink("shop/cart.py", copy.path / "cart_link.py")
    (copy.path / "shop" / "tax.py").unlink()
    (copy.path / "shop" / "tax.py").mkdir()  # a file that became a folder
    write(copy.path, {"shop/tax.py/__init__.py": "RATE = 1\n"})
    change = changes(copy)
    assert not change.refused, change.findings
    statuses = {f.path: f.status for f in change.files}
    assert statuses["shop/tax.py"] == "deleted" and statuses["shop/tax.py/__init__.py"] == "added"
    assert {f.path: f.binary for f in change.files}["latin.txt"]  # not UTF-8: a binary patch
    assert {f.path: f.mode for f in change.files}["run.sh"] == "100755"
    change.patch.encode("utf-8")  # all text
    check = tmp_path / "check"
    run_git(tmp_path, "clone", "-q", str(repo), str(check))
    run_git(check, "checkout", "-q", "--detach", change.base)
    run_git(check, "apply", "--binary", "--index", "-", stdin=change.patch.encode())
    assert run_git(check, "write-tree").strip() == change.tree
    assert Change.from_dict(change.to_dict()) == change
    assert WorkingCopy.from_dict(copy.to_dict()) == copy


def test_an_agent_that_committed_is_recorded_and_its_tree_is_the_change(
    project: Path, make_repo
) -> None:
    copy = copy_of(project, make_repo(FILES))
    write(copy.path, {"shop/tax.py": "RATE = 0.1\n"})
    head = commit_all(copy.path, "agent was here")
    write(copy.path, {"extra.py": "y = 2\n"})  # and something left uncommitted
    change = changes(copy)
    assert change.agent_head == head
    assert rules(change) == ["repo.agent-committed"] and not change.refused
    assert set(change.paths) == {"shop/tax.py", "extra.py"}


def test_an_agent_on_a_branch_of_its_own_is_seen_through_packed_refs(
    project: Path, make_repo
) -> None:
    copy = copy_of(project, make_repo(FILES))
    run_git(copy.path, "checkout", "-q", "-b", "work")
    write(copy.path, {"shop/tax.py": "RATE = 0.1\n"})
    head = commit_all(copy.path)
    run_git(copy.path, "pack-refs", "--all")
    assert changes(copy).agent_head == head


def test_a_deleted_or_replaced_git_folder_refuses_the_change(project: Path, make_repo) -> None:
    repo = make_repo(FILES)
    copy = copy_of(project, repo)
    write(copy.path, {"shop/tax.py": "RATE = 0.1\n"})
    shutil.rmtree(copy.path / ".git")
    change = changes(copy)
    assert rules(change) == ["repo.git-deleted"] and change.refused
    assert change.paths == ["shop/tax.py"]  # still shown, never used
    run_git(copy.path, "init", "-q")
    assert rules(changes(copy)) == ["repo.git-replaced"]
    shutil.rmtree(copy.path / ".git")
    (copy.path / ".git").write_text("gitdir: /somewhere/else\n")
    assert rules(changes(copy)) == ["repo.git-replaced"]
    (copy.path / ".git").unlink()
    os.symlink(repo / ".git", copy.path / ".git")
    assert rules(changes(copy)) == ["repo.git-replaced"]


def test_symlinks_pointing_out_of_the_copy_refuse_the_change(project: Path, make_repo) -> None:
    copy = copy_of(project, make_repo(FILES))
    os.symlink("/etc/passwd", copy.path / "passwd")
    os.symlink("../../outside", copy.path / "shop" / "up")
    os.symlink("cart.py", copy.path / "shop" / "fine.py")
    os.symlink(".git/config", copy.path / "config")
    change = changes(copy)
    refused = {f.file for f in change.findings if f.rule == "repo.symlink-outside"}
    assert refused == {"passwd", "shop/up", "config"} and change.refused
    assert "shop/fine.py" in change.paths


def test_a_folder_turned_into_a_symlink_is_not_read_through(project: Path, make_repo) -> None:
    copy = copy_of(project, make_repo(FILES))
    outside = copy.root / "outside"
    outside.mkdir()
    (outside / "cart.py").write_text("stolen = True\n")
    shutil.rmtree(copy.path / "shop")
    os.symlink(outside, copy.path / "shop")
    change = changes(copy)
    assert {f.path: f.status for f in change.files} == {
        "shop": "added",
        "shop/__init__.py": "deleted",
        "shop/cart.py": "deleted",
        "shop/tax.py": "deleted",
    }
    assert rules(change) == ["repo.symlink-outside"]
    assert "stolen" not in change.patch


def test_huge_outputs_are_capped_per_file_and_in_total(project: Path, make_repo) -> None:
    repo = make_repo({**FILES, "data/large.csv": "x\n" * 3000})
    copy = copy_of(project, repo)
    limits = ChangeLimits(max_file_bytes=2048, max_change_bytes=5000)
    write(copy.path, {"dump.txt": "y" * 10_000, "small.py": "z = 1\n"})
    change = changes(copy, limits=limits)
    assert rules(change) == ["repo.file-too-large"] and change.refused
    assert change.paths == ["small.py"]  # the large file left out; the old large one is fine
    (copy.path / "dump.txt").unlink()
    for n in range(4):
        write(copy.path, {f"part{n}.txt": "p" * 1500})
    change = changes(copy, limits=limits)
    assert rules(change) == ["repo.change-too-large"]
    assert all(f.patch == "" for f in change.files)
    for n in range(4):
        (copy.path / f"part{n}.txt").unlink()
    (copy.path / "data" / "large.csv").unlink()  # deleting 6000 bytes counts too
    assert rules(changes(copy, limits=limits)) == ["repo.change-too-large"]
    assert not changes(copy, limits=ChangeLimits(max_files=0)).empty
    assert "repo.too-many-files" in rules(changes(copy, limits=ChangeLimits(max_files=0)))


def test_a_nested_repository_is_refused(project: Path, make_repo) -> None:
    copy = copy_of(project, make_repo(FILES))
    nested = copy.path / "vendor"
    nested.mkdir()
    run_git(nested, "init", "-q")
    write(nested, {"a.py": "x = 1\n"})
    commit_all(nested)
    assert "repo.nested-repository" in rules(changes(copy))


def test_a_base_the_repository_lost_is_a_state_error(project: Path, make_repo) -> None:
    repo = make_repo(FILES)
    run_git(repo, "checkout", "-q", "-b", "doomed")
    write(repo, {"gone.py": "x = 1\n"})
    doomed = commit_all(repo)
    run_git(repo, "checkout", "-q", "main")
    source = open_source(project, repo)
    copy = create_working_copy(source, key="t", base=doomed)
    assert read_base_file(copy, "gone.py") == b"x = 1\n"
    assert read_base_file(copy, "nope.py") is None
    shutil.rmtree(copy.path / ".git")  # the agent's own clone no longer holds it either
    run_git(repo, "branch", "-D", "doomed")
    run_git(repo, "reflog", "expire", "--expire=now", "--all")
    run_git(repo, "gc", "-q", "--prune=now")
    with pytest.raises(StateError, match=r"base commit \w+ of working copy \S+ is missing"):
        changes(copy)


def test_copies_are_named_safely_and_replaced_when_made_again(project: Path, make_repo) -> None:
    source = open_source(project, make_repo(FILES))
    base = resolve_base(source)
    with pytest.raises(InputError, match="folder name"):
        create_working_copy(source, key="../escape", base=base)
    with pytest.raises(InputError, match="commit id"):
        create_working_copy(source, key="t", base="main")
    with pytest.raises(StateError, match="is missing from"):
        create_working_copy(source, key="t", base="0" * 40)
    copy = create_working_copy(source, key="t", base=base)
    write(copy.path, {"junk.py": "x = 1\n"})
    again = create_working_copy(source, key="t", base=base)
    assert again.root == copy.root and changes(again).empty and again.token != copy.token


def test_git_in_the_copy_cannot_run_hooks_or_filters_on_shipyards_side(
    project: Path, make_repo
) -> None:
    copy = copy_of(project, make_repo(FILES))
    proof = copy.root / "pwned"
    hook = copy.path / ".git" / "hooks" / "post-checkout"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(f"#!/bin/sh\ntouch {proof}\n")
    hook.chmod(0o755)
    with (copy.path / ".git" / "config").open("a") as config:
        config.write(
            f'[core]\n\tfsmonitor = touch {proof}\n[filter "x"]\n\tclean = touch {proof}\n'
        )
    write(copy.path, {".gitattributes": "*.py filter=x\n", "shop/tax.py": "RATE = 0\n"})
    change = changes(copy)
    assert {"shop/tax.py", ".gitattributes"} <= set(change.paths)
    assert not proof.exists()
    # git inside the copy (the agent's own) would have run them: the copy is really a repo
    subprocess.run(["git", "status"], cwd=copy.path, env=GIT_ENV, capture_output=True, check=False)
    assert proof.exists()
