"""Helpers for the repository tests (importable as ``repos_support``): real git repositories
made by the tests, and git to look at them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from shipyard.config import RepoSettings
from shipyard.repos import RepoSource, WorkingCopy, create_working_copy, open_repo, resolve_base

GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "LC_ALL": "C",
}


def run_git(folder: Path, *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=folder, env=GIT_ENV, input=stdin, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def write(folder: Path, files: Mapping[str, str | bytes]) -> None:
    for name, content in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)


def commit_all(folder: Path, message: str = "change") -> str:
    run_git(folder, "add", "-A")
    run_git(folder, "commit", "-q", "-m", message)
    return run_git(folder, "rev-parse", "HEAD").strip()


def copy_of(project: Path, repo: Path, key: str = "task-1", **settings: object) -> WorkingCopy:
    source = open_source(project, repo, **settings)
    return create_working_copy(source, key=key, base=resolve_base(source))


def open_source(project: Path, repo: Path, **settings: object) -> RepoSource:
    config = RepoSettings.model_validate({"path": os.path.relpath(repo, project), **settings})
    return open_repo("shop", config, root=project, state_dir=project / ".shipyard")


def make_repository(folder: Path, files: Mapping[str, str | bytes]) -> Path:
    """A git repository in ``folder`` holding ``files`` in one commit on main."""
    folder.mkdir(parents=True)
    run_git(folder, "init", "-q", "-b", "main")
    write(folder, files)
    commit_all(folder, "initial")
    return folder


REPO_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "repo"
"""The repository-change example: a project, the ``inventory`` repository's files, and the
replies recorded for its goal."""

EXAMPLE_GOAL = (
    "Fix Stock.reserve: it lets an order reserve more units than are free, so stock goes "
    "negative. Refuse it with OutOfStock."
)
"""The goal the example's replies were recorded for."""


def repo_example(dest: Path) -> Path:
    """A private copy of the repository-change example, its ``inventory`` folder made a git
    repository (one commit on main), as ``scripts/demo.sh`` does."""
    import shutil

    shutil.copytree(REPO_EXAMPLE, dest, ignore=shutil.ignore_patterns(".shipyard", "__pycache__"))
    inventory = dest / "inventory"
    run_git(inventory, "init", "-q", "-b", "main")
    commit_all(inventory, "inventory: stock levels and reservations")
    return dest
