"""Changes: what a working copy changed against its base, and whether it may be used.

:func:`changes` diffs the working tree against the base commit with Shipyard's own git
folder and a temporary index: untracked files count, ignored files (``.gitignore``) do not.
It gives each file added, modified or deleted with its line counts and its patch (git's
format, binary patches for binary or non-UTF-8 files, so ``git apply`` reproduces it), and
the resulting tree's id (``git write-tree``).

What a change may not do is an error finding that refuses it: a symlink pointing out of the
copy (or into .git), a file or a whole change over :class:`ChangeLimits`, a nested
repository, special files, ``.git`` deleted or replaced. A generator that committed on its
own is recorded (a warning) and its working tree is the change; its commits are not kept.
Paths beyond a symlink are never read: a folder turned into a symlink is a deletion of its
files and an added symlink.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shipyard.config import RepoSettings
from shipyard.model import Finding
from shipyard.repos._workcopy import (
    MARKER,
    SHA,
    Entry,
    WorkingCopy,
    base_entries,
    lstat_inside,
    run_in_copy,
    temporary_index,
    untracked_files,
)

__all__ = ["Change", "ChangeLimits", "FileChange", "changes"]

_REF = re.compile(r"^refs/[A-Za-z0-9._/-]+$")
_STATUS: dict[str, Literal["added", "modified", "deleted"]] = {
    "A": "added",
    "M": "modified",
    "T": "modified",
    "D": "deleted",
}


@dataclass(frozen=True, kw_only=True)
class ChangeLimits:
    """What a change may weigh before it is refused."""

    max_file_bytes: int = 1_000_000
    """Largest file a change may add or rewrite."""
    max_change_bytes: int = 20_000_000
    """Most bytes of files (new contents, and deleted files' old ones) a change may touch."""
    max_files: int = 5_000
    """Most files a change may touch."""

    @classmethod
    def from_settings(cls, settings: RepoSettings) -> ChangeLimits:
        return cls(
            max_file_bytes=settings.max_file_bytes, max_change_bytes=settings.max_change_bytes
        )


@dataclass(frozen=True, kw_only=True)
class FileChange:
    """One file a change adds, modifies or deletes."""

    path: str
    """Repository-relative, with ``/``."""
    status: Literal["added", "modified", "deleted"]
    """What happened to it (a file turned symlink, or a mode change, is ``modified``)."""
    lines_added: int = 0
    """Lines added (0 for a binary file)."""
    lines_removed: int = 0
    """Lines removed (0 for a binary file)."""
    binary: bool = False
    """True when its patch is a git binary patch."""
    mode: str = ""
    """Its git mode after the change (``100644``, ``100755``, ``120000``); '' when deleted."""
    patch: str = ""
    """Its unified patch (git's format, applicable with ``git apply``); '' when refused."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "lines_added": self.lines_added,
            "lines_removed": self.lines_removed,
            "binary": self.binary,
            "mode": self.mode,
            "patch": self.patch,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileChange:
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class Change:
    """A working copy's change against its base: what the attempt produced."""

    repo: str
    """The repository."""
    base: str
    """The base commit id."""
    tree: str
    """The git tree id of the changed tree (the base's tree when nothing changed)."""
    files: tuple[FileChange, ...] = ()
    """Each changed file, in path order."""
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    """What is wrong with the change (errors refuse it) or worth knowing (warnings)."""
    agent_head: str = ""
    """The commit the copy's HEAD moved to when a generator committed on its own ('' when
    HEAD stayed at the base)."""

    @property
    def refused(self) -> bool:
        """True when a finding is an error: the change must not be used."""
        return any(f.severity == "error" for f in self.findings)

    @property
    def empty(self) -> bool:
        return not self.files

    @property
    def lines_added(self) -> int:
        return sum(f.lines_added for f in self.files)

    @property
    def lines_removed(self) -> int:
        return sum(f.lines_removed for f in self.files)

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]

    @property
    def patch(self) -> str:
        """The whole change as one patch."""
        return "".join(f.patch for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "base": self.base,
            "tree": self.tree,
            "files": [f.to_dict() for f in self.files],
            "findings": [f.to_dict() for f in self.findings],
            "agent_head": self.agent_head,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        return cls(
            repo=str(data["repo"]),
            base=str(data["base"]),
            tree=str(data["tree"]),
            files=tuple(FileChange.from_dict(f) for f in data.get("files", [])),
            findings=tuple(Finding.from_dict(f) for f in data.get("findings", [])),
            agent_head=str(data.get("agent_head", "")),
        )


def changes(copy: WorkingCopy, *, limits: ChangeLimits | None = None) -> Change:
    """The working copy's change against its base: every file added, modified or deleted
    (untracked files included, ignored ones not), with line counts, patches and the
    resulting tree id. Problems are findings on the change, never exceptions; only a base
    that has disappeared is a StateError."""
    limits = limits or ChangeLimits()
    findings: list[Finding] = []
    agent_head = _check_git_folder(copy, findings)
    with temporary_index(copy) as index:
        base = base_entries(copy)
        untracked = untracked_files(copy, index)
        stage, gone, sizes = _select(copy, base, untracked, limits, findings)
        for args, paths in (
            (["update-index", "-z", "--force-remove", "--stdin"], gone),
            (["update-index", "-z", "--add", "--remove", "--replace", "--stdin"], stage),
        ):
            if paths:
                payload = b"\0".join(p.encode("utf-8", "surrogateescape") for p in paths)
                run_in_copy(copy, args, index=index, stdin=payload + b"\0")
        tree = run_in_copy(copy, ["write-tree"], index=index).stdout.decode().strip()
    raw = _raw_diff(copy, tree)
    _check_modes(copy, raw, findings)
    if len(raw) > limits.max_files:
        findings.append(
            Finding(
                rule="repo.too-many-files",
                message=f"the change touches {len(raw)} files, more than the limit of "
                f"{limits.max_files}",
            )
        )
    touched = sum(
        base[path].size if entry.status == "D" else sizes.get(path, 0)
        for path, entry in raw.items()
    )
    if touched > limits.max_change_bytes:
        findings.append(
            Finding(
                rule="repo.change-too-large",
                message=f"the change touches {touched} bytes of files, more than the limit of "
                f"{limits.max_change_bytes}",
            )
        )
    if agent_head and agent_head != copy.base:
        findings.append(
            Finding(
                rule="repo.agent-committed",
                message=f"the generator committed on its own (HEAD moved from {copy.base[:12]} "
                f"to {agent_head[:12]}); its commits are not kept: the change is its "
                "working tree against the base",
                file=".git",
                severity="warning",
            )
        )
    oversize = any(f.rule in ("repo.too-many-files", "repo.change-too-large") for f in findings)
    files = _file_changes(copy, tree, raw, with_patches=not oversize)
    return Change(
        repo=copy.repo,
        base=copy.base,
        tree=tree,
        files=files,
        findings=tuple(findings),
        agent_head=agent_head if agent_head != copy.base else "",
    )


def _select(
    copy: WorkingCopy,
    base: dict[str, Entry],
    untracked: list[str],
    limits: ChangeLimits,
    findings: list[Finding],
) -> tuple[list[str], list[str], dict[str, int]]:
    """Which paths to stage (added as they are now), which to remove (gone, or no longer a
    file), and the sizes seen; files over the limit stay at the base's version."""
    stage: list[str] = []
    gone: list[str] = []
    sizes: dict[str, int] = {}
    for path in sorted(set(base) | set(untracked)):
        if path.endswith("/"):
            findings.append(
                Finding(
                    rule="repo.nested-repository",
                    message=f"{path} is a git repository inside the working copy; a change "
                    "cannot hold one (remove its .git, or leave it out)",
                    file=path.rstrip("/"),
                )
            )
            continue
        info = lstat_inside(copy.path, path)
        if info is None or stat.S_ISDIR(info.st_mode):
            # Missing, reached through a symlink, or a base file that became a folder
            # (whose files are listed themselves): out of the index.
            gone.append(path)
            continue
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
            findings.append(
                Finding(
                    rule="repo.special-file",
                    message=f"{path} is neither a file nor a symlink (a fifo, socket or "
                    "device); it is left out",
                    file=path,
                )
            )
            continue
        known = base.get(path)
        if (
            stat.S_ISREG(info.st_mode)
            and info.st_size > limits.max_file_bytes
            and (known is None or known.size != info.st_size)
        ):
            findings.append(
                Finding(
                    rule="repo.file-too-large",
                    message=f"{path} is {info.st_size} bytes, more than the limit of "
                    f"{limits.max_file_bytes} for one file; it is left out of the change",
                    file=path,
                )
            )
            continue
        sizes[path] = info.st_size
        stage.append(path)
    return stage, gone, sizes


@dataclass(frozen=True)
class _Raw:
    status: str
    """git's letter: A, M, T or D."""
    mode: str
    """The new mode ('' when deleted)."""
    blob: str
    """The new object id."""


def _raw_diff(copy: WorkingCopy, tree: str) -> dict[str, _Raw]:
    """Every path that differs from the base, in path order."""
    out = run_in_copy(
        copy, ["diff-tree", "-r", "-z", "--no-renames", "--raw", copy.base, tree]
    ).stdout.decode("utf-8", "surrogateescape")
    fields = out.split("\0")
    raw: dict[str, _Raw] = {}
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        if not meta.startswith(":"):
            continue
        _old_mode, new_mode, _old, new, status = meta[1:].split()
        deleted = status[0] == "D"
        raw[path] = _Raw(status=status[0], mode="" if deleted else new_mode, blob=new)
    return raw


def _check_modes(copy: WorkingCopy, raw: dict[str, _Raw], findings: list[Finding]) -> None:
    """Submodules and symlinks out of the repository (a link's target read from the change
    itself, not from the tree, which may have moved on)."""
    for path, entry in raw.items():
        if entry.mode == "160000":
            findings.append(
                Finding(
                    rule="repo.nested-repository",
                    message=f"{path} is a submodule commit; a change cannot add one",
                    file=path,
                )
            )
        if entry.mode != "120000":
            continue
        blob = run_in_copy(copy, ["cat-file", "blob", entry.blob]).stdout
        target = blob.decode("utf-8", "surrogateescape")
        inside = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if target.startswith("/") or inside == ".." or inside.startswith("../"):
            message = (
                f"{path} is a symlink to {target!r}, outside the repository; a change may "
                "only link to files inside it"
            )
        elif inside == ".git" or inside.startswith(".git/"):
            message = f"{path} is a symlink into .git; a change may not link there"
        else:
            continue
        findings.append(Finding(rule="repo.symlink-outside", message=message, file=path))


def _numstat(copy: WorkingCopy, tree: str) -> dict[str, tuple[int, int, bool]]:
    out = run_in_copy(
        copy, ["diff-tree", "-r", "-z", "--no-renames", "--numstat", copy.base, tree]
    ).stdout.decode("utf-8", "surrogateescape")
    counts: dict[str, tuple[int, int, bool]] = {}
    for record in out.split("\0"):
        if not record:
            continue
        added, removed, path = record.split("\t", 2)
        binary = added == "-"
        counts[path] = (0 if binary else int(added), 0 if binary else int(removed), binary)
    return counts


_PATCH_ARGS = (
    "diff-tree",
    "-r",
    "-p",
    "--binary",
    "--no-renames",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--full-index",
    "--src-prefix=a/",
    "--dst-prefix=b/",
)


def _split_patch(data: bytes) -> list[bytes]:
    chunks = re.split(rb"(?m)^(?=diff --git )", data)
    return [c for c in chunks if c.startswith(b"diff --git ")]


def _patches(copy: WorkingCopy, tree: str, paths: list[str]) -> dict[str, tuple[str, bool]]:
    """path -> (patch text, binary). A file whose text is not UTF-8 gets a binary patch, so
    that every patch is text that applies exactly."""
    chunks = _split_patch(run_in_copy(copy, [*_PATCH_ARGS, copy.base, tree]).stdout)
    patches: dict[str, tuple[str, bool]] = {}
    redo: list[str] = []
    for path, chunk in zip(paths, chunks, strict=False):
        try:
            patches[path] = (chunk.decode("utf-8"), b"\nGIT binary patch\n" in chunk)
        except UnicodeDecodeError:
            redo.append(path)
    if redo:
        attributes = copy.git_dir / "info" / "attributes"
        attributes.parent.mkdir(exist_ok=True)
        attributes.write_text("* binary\n")
        try:
            args = [*_PATCH_ARGS, copy.base, tree, "--", *redo]
            again = _split_patch(run_in_copy(copy, args).stdout)
        finally:
            attributes.unlink()
        for path, chunk in zip(redo, again, strict=False):
            patches[path] = (chunk.decode("ascii", "replace"), True)
    return patches


def _file_changes(
    copy: WorkingCopy, tree: str, raw: dict[str, _Raw], *, with_patches: bool
) -> tuple[FileChange, ...]:
    if not raw:
        return ()
    counts = _numstat(copy, tree) if with_patches else {}
    paths = list(raw)
    patches = _patches(copy, tree, paths) if with_patches else {}
    files = []
    for path in paths:
        entry = raw[path]
        added, removed, binary = counts.get(path, (0, 0, False))
        patch, binary_patch = patches.get(path, ("", binary))
        files.append(
            FileChange(
                path=path,
                status=_STATUS.get(entry.status, "modified"),
                lines_added=added,
                lines_removed=removed,
                binary=binary or binary_patch,
                mode=entry.mode,
                patch=patch,
            )
        )
    return tuple(files)


def _read_small(path: Path, limit: int = 4096) -> str | None:
    """A regular file's text, without following a symlink; None when it is not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _check_git_folder(copy: WorkingCopy, findings: list[Finding]) -> str:
    """The commit the copy's HEAD names ('' when unknown), reading ``tree/.git`` as data
    only; a deleted or replaced ``.git`` is an error finding."""
    folder = copy.path / ".git"
    try:
        info = os.lstat(folder)
    except OSError:
        findings.append(
            Finding(
                rule="repo.git-deleted",
                message="the working copy's .git was deleted; a generator must leave the "
                "repository in place",
                file=".git",
            )
        )
        return ""
    marker = _read_small(folder / MARKER) if stat.S_ISDIR(info.st_mode) else None
    if marker is None or marker.strip() != copy.token:
        findings.append(
            Finding(
                rule="repo.git-replaced",
                message="the working copy's .git was replaced by another repository (or a "
                "file or symlink); a generator must leave the repository in place",
                file=".git",
            )
        )
        return ""
    head = (_read_small(folder / "HEAD") or "").strip()
    if SHA.match(head):
        return head
    name = head.removeprefix("ref:").strip()
    if not head.startswith("ref:") or not _REF.match(name) or ".." in name:
        return ""
    loose = (_read_small(folder / name) or "").strip()
    if SHA.match(loose):
        return loose
    packed = _read_small(folder / "packed-refs", limit=16 << 20) or ""
    for line in packed.splitlines():
        sha, _, ref = line.partition(" ")
        if ref == name and SHA.match(sha):
            return sha
    return ""
