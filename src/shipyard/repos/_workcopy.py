"""Working copies: a clean checkout of a base commit that a generator may change.

A working copy lives in ``STATE/repos/NAME/copies/KEY/``::

    tree/           the working tree, with a .git of its own (a clone of the repository
                    that borrows its objects read-only, HEAD detached at the base, no
                    remote): what a generator sees and changes
    shipyard.git/   Shipyard's own git folder for the copy, outside the tree: what the copy
                    changed is computed with it (:mod:`shipyard.repos._changes`), so nothing
                    a generator writes into tree/.git (hooks, configuration, a replaced
                    repository) is ever run or trusted

The repository itself is only read: ``git clone --shared --no-checkout`` copies no object
and writes nothing back, so its branches, index and working tree stay exactly as they were.
The copy's .git borrows the repository's objects through git alternates
(:attr:`WorkingCopy.borrowed`), and its ``.git/shipyard-copy`` holds a token that tells the
copy's own repository from one put in its place.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.errors import InputError, StateError
from shipyard.repos._git import git, git_env
from shipyard.repos._source import RepoSource

__all__ = [
    "WorkingCopy",
    "base_files",
    "create_working_copy",
    "read_base_file",
    "remove_working_copy",
    "working_files",
]

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
MARKER = "shipyard-copy"


@dataclass(frozen=True, kw_only=True)
class WorkingCopy:
    """One working copy of a repository at a base commit."""

    repo: str
    """The ``[repos.NAME]`` it is a copy of."""
    key: str
    """Its name among the repository's copies (e.g. the task id)."""
    root: Path
    """The folder holding ``tree/`` and ``shipyard.git/``."""
    base: str
    """The commit id it was checked out at."""
    token: str
    """The identity written into ``tree/.git``: a different one means .git was replaced."""
    borrowed: tuple[Path, ...] = ()
    """Object stores ``tree/.git`` reads through git alternates: a sandbox run that uses git
    in the copy needs them mounted read-only at the same paths."""

    @property
    def path(self) -> Path:
        """The working tree."""
        return self.root / "tree"

    @property
    def git_dir(self) -> Path:
        """Shipyard's own git folder for the copy (never visible to a generator)."""
        return self.root / "shipyard.git"

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "key": self.key,
            "root": str(self.root),
            "base": self.base,
            "token": self.token,
            "borrowed": [str(p) for p in self.borrowed],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkingCopy:
        return cls(
            repo=str(data["repo"]),
            key=str(data["key"]),
            root=Path(data["root"]),
            base=str(data["base"]),
            token=str(data["token"]),
            borrowed=tuple(Path(p) for p in data.get("borrowed", [])),
        )


def create_working_copy(source: RepoSource, *, key: str, base: str) -> WorkingCopy:
    """A clean working copy of ``source`` at the commit ``base`` (an id, see
    :func:`~shipyard.repos.resolve_base`), in ``source.work_dir / key``. A copy already
    there under that key is replaced (a step that runs again starts clean)."""
    if not _KEY.match(key):
        raise InputError(
            f"working copy key {key!r} is not a folder name",
            hint="use letters, digits, '.', '_' and '-' (e.g. the task id)",
        )
    if not SHA.match(base):
        raise InputError(
            f"base {base!r} is not a commit id", hint="resolve it with resolve_base() first"
        )
    root = source.work_dir / key
    what = f"repository {source.name!r}: working copy {key}"
    found = git(
        [f"--git-dir={source.git_dir}", "cat-file", "-e", f"{base}^{{commit}}"],
        cwd=source.git_dir,
        ok=range(256),
    )
    if found.returncode != 0:
        raise StateError(
            f"repository {source.name!r}: the base commit {base} is missing from {source.location}",
            hint="the repository lost it (a force-push or gc): start the task again from an "
            "existing branch",
        )
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    tree = root / "tree"
    git(
        [
            "clone",
            "--shared",
            "--no-checkout",
            "--quiet",
            "--template=",
            "--end-of-options",
            str(source.git_dir),
            str(tree),
        ],
        cwd=root,
        what=what,
    )
    git(["checkout", "--detach", "--quiet", base, "--"], cwd=tree, what=what)
    # No way back by name: the copy knows nothing of where it came from but its objects.
    git(["remote", "remove", "origin"], cwd=tree, what=what)
    token = secrets.token_hex(16)
    (tree / ".git" / MARKER).write_text(token + "\n")
    private = root / "shipyard.git"
    git(["init", "--bare", "--quiet", "--template=", str(private)], cwd=root, what=what)
    alternates = private / "objects" / "info" / "alternates"
    alternates.parent.mkdir(parents=True, exist_ok=True)
    alternates.write_text(f"{source.objects_dir}\n")
    return WorkingCopy(
        repo=source.name,
        key=key,
        root=root,
        base=base,
        token=token,
        borrowed=(source.objects_dir,),
    )


def remove_working_copy(copy: WorkingCopy) -> None:
    """Remove the copy's folder (nothing of the repository)."""
    shutil.rmtree(copy.root, ignore_errors=True)


def read_base_file(copy: WorkingCopy, path: str) -> bytes | None:
    """The content of ``path`` at the base commit, or None when the base has no such file."""
    done = run_in_copy(copy, ["cat-file", "blob", f"{copy.base}:{path}"], ok=range(256))
    return done.stdout if done.returncode == 0 else None


def base_files(copy: WorkingCopy) -> list[str]:
    """The files of the base commit, sorted."""
    return sorted(base_entries(copy))


def working_files(copy: WorkingCopy) -> list[str]:
    """The copy's files as they are now: the base's files still there, and new files git
    does not ignore; sorted. Paths beyond a symlink or inside a nested repository are left out."""
    with temporary_index(copy) as index:
        base = base_entries(copy)
        untracked = untracked_files(copy, index)
    found = []
    for path in sorted(set(base) | set(untracked)):
        if path.endswith("/"):
            continue  # a nested repository
        info = lstat_inside(copy.path, path)
        if info is not None and (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
            found.append(path)
    return found


@dataclass(frozen=True, kw_only=True)
class Entry:
    mode: str
    sha: str
    size: int


def run_in_copy(
    copy: WorkingCopy,
    args: Sequence[str],
    *,
    index: Path | None = None,
    stdin: bytes | None = None,
    ok: Sequence[int] | range = (0,),
) -> Any:
    env = git_env()
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    return git(
        [f"--git-dir={copy.git_dir}", f"--work-tree={copy.path}", *args],
        cwd=copy.root,
        env=env,
        stdin=stdin,
        ok=ok,
        what=f"repository {copy.repo!r}: working copy {copy.key}",
    )


@contextmanager
def temporary_index(copy: WorkingCopy) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="index-", dir=copy.root) as folder:
        index = Path(folder) / "index"
        done = run_in_copy(copy, ["read-tree", copy.base], index=index, ok=range(256))
        if done.returncode != 0:
            raise StateError(
                f"repository {copy.repo!r}: the base commit {copy.base} of working copy "
                f"{copy.key} is missing",
                hint="the repository lost it (a force-push or gc): start the task again "
                "from an existing base",
            )
        yield index


def base_entries(copy: WorkingCopy) -> dict[str, Entry]:
    out = run_in_copy(copy, ["ls-tree", "-r", "-z", "-l", "--full-tree", copy.base]).stdout
    entries = {}
    for record in out.decode("utf-8", "surrogateescape").split("\0"):
        if not record:
            continue
        meta, path = record.split("\t", 1)
        mode, _kind, sha, size = meta.split()
        entries[path] = Entry(mode=mode, sha=sha, size=int(size) if size.isdigit() else 0)
    return entries


def untracked_files(copy: WorkingCopy, index: Path) -> list[str]:
    out = run_in_copy(
        copy, ["ls-files", "-z", "--others", "--exclude-standard"], index=index
    ).stdout
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def lstat_inside(tree: Path, path: str) -> os.stat_result | None:
    """``lstat`` of ``tree/path`` when every folder on the way is a real folder (not a
    symlink); None when it is missing or reached through a symlink."""
    current = tree
    parts = path.split("/")
    for part in parts[:-1]:
        current = current / part
        try:
            info = os.lstat(current)
        except OSError:
            return None
        if not stat.S_ISDIR(info.st_mode):
            return None
    try:
        return os.lstat(current / parts[-1])
    except OSError:
        return None
