"""The ``repo`` target: a repository change released as a branch of the repository.

A repository change's artifact is its summary (``change.json``: the ``base`` commit it was
made against and the ``tree`` it produces) and its patch (``change.patch``, from
``git diff --binary --full-index``). ``deploy`` applies the patch to the base's tree on a
temporary index, checks that the tree is the one the change's checks passed on, and writes
it as exactly one commit on ``shipyard/<key>`` whose parent is the base::

    <the goal's first line, cut to 72 characters>

    <the goal in full, when it is longer>

    Shipyard-Task: <key>
    Shipyard-Artifact: <artifact id>
    Shipyard-Release: <key>

Without ``merge_to`` that branch is the release: ``promote`` names it and ``withdraw`` has
nothing to undo (the branch stays: it names what was released). With ``merge_to``, promotion
and withdrawal are the ``git`` target's, into that branch (a fast-forward or a merge commit;
a revert commit to undo). Everything else is the ``git`` target's too: only refs move, by
compare-and-swap, and a branch checked out in a working tree is refused, never moved.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import ConfigError, InputError, StateError
from shipyard.release._target import Deployed, Promoted
from shipyard.release.targets._git_plumbing import (
    ARTIFACT,
    RELEASE,
    GitRepository,
    open_repository,
)
from shipyard.release.targets.git import GitTarget, MergeMode

__all__ = ["TASK", "RepoChangeTarget", "commit_message"]

TASK = "Shipyard-Task"
"""Trailer naming the task whose change a commit is."""
SUBJECT_LIMIT = 72
"""Longest first line of a change's commit message."""
CHANGE_FILES = ("change.json", "change.patch")

_OBJECT_ID = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_AUTHOR = re.compile(r"^\s*([^<>\n]*[^<>\s])\s*<([^<>\s]+)>\s*$")


@dataclass(frozen=True, kw_only=True)
class _Change:
    """What ``deploy`` needs of a change's artifact."""

    base: str
    """The commit the change was made against."""
    tree: str
    """The tree id the change produces ('' when the summary does not say)."""
    patch: bytes
    """The change as a patch against the base."""


class RepoChangeTarget(GitTarget):
    """Releases repository changes as ``shipyard/<key>`` branches of ``repository`` (a git
    folder, or a repository's top folder), merged into ``merge_to`` when it is given.

    ``author`` is ``"Name <email>"`` for the commits Shipyard makes; '' takes the
    repository's own ``user.name``/``user.email``, else ``Shipyard <shipyard@localhost>``.
    """

    kind = "repo"
    served = False

    def __init__(
        self,
        name: str,
        repository: Path,
        *,
        merge_to: str | None = None,
        merge: MergeMode = "fast-forward",
        author: str = "",
    ) -> None:
        super().__init__(name, repository, branch=merge_to or "", merge=merge)
        self.merge_to = merge_to or None
        self.identity = _identity(name, author)

    # -- the Target protocol ---------------------------------------------------------------

    def deploy(
        self,
        *,
        key: str,
        path: str,
        files: Mapping[str, bytes],
        title: str = "",
        artifact: str = "",
    ) -> Deployed:
        """Write the change in ``files`` as one commit on ``shipyard/<key>``, its parent the
        change's base. ``path`` is not used (a change says which files it touches);
        ``title`` is the goal. A no-op (``already``) when the branch holds the release of
        ``key``, so publishing again after a crash never makes a second commit."""
        change = _read_change(self.name, files)
        ref = self._candidate_ref(key)
        self._refuse_checked_out(ref)
        deployed = self._deployed(key, ref)
        if deployed is not None:
            return deployed
        repo = self._repo()
        if repo.rev(change.base) is None:
            raise StateError(
                f"repository target {self.name!r}: the change's base commit {change.base} "
                f"is not in {self.repository}",
                hint="the repository lost that commit (a rewritten or pruned history): make "
                "the change again from a commit it has",
                details={"base": change.base},
            )
        tree = repo.patched_tree(change.base, change.patch)
        if change.tree and tree != change.tree:
            raise StateError(
                f"repository target {self.name!r}: the patch does not reproduce the checked "
                f"tree (expected {change.tree}, the patch on {change.base[:12]} gives {tree}); "
                "nothing was released",
                hint="the artifact's patch and summary disagree: make the change again",
                details={"expected": change.tree, "found": tree, "base": change.base},
            )
        commit = self._commit_tree(tree, [change.base], commit_message(title, key, artifact))
        repo.move(ref, commit, None, f"shipyard: deploy {key}")
        return Deployed(key=key, url_path=ref.removeprefix("refs/heads/"), version=commit)

    def promote(self, key: str) -> Promoted:
        """With ``merge_to``: merge ``shipyard/<key>`` into it (the ``git`` target's
        promotion). Without: the branch is the release, and it is named."""
        if self.merge_to is not None:
            return super().promote(key)
        ref = self._candidate_ref(key)
        deployed = self._deployed(key, ref)
        if deployed is None:
            raise StateError(
                f"repository target {self.name!r}: release {key!r} was not deployed "
                f"(no branch {ref.removeprefix('refs/heads/')})",
                hint="deploy the release before promoting it",
            )
        return Promoted(key=key, url_path=deployed.url_path, version=deployed.version)

    def withdraw(self, key: str) -> str | None:
        """With ``merge_to``: revert the merge with a new commit (the ``git`` target's).
        Without, nothing was merged: None (the branch stays; it names what was released)."""
        if self.merge_to is None:
            self._candidate_ref(key)
            return None
        return super().withdraw(key)

    # -- hooks of the git target -----------------------------------------------------------

    def _repo(self) -> GitRepository:
        if self._opened is None:
            self._opened = open_repository(
                self.name, self.repository, self.merge_to, identity=self.identity
            )
        return self._opened

    def _live_head(self) -> str | None:
        return None if self.merge_to is None else super()._live_head()

    def _checked_out_hint(self, branch: str, worktree: str) -> str:
        if branch == self.merge_to:
            return (
                f"switch {worktree} to another branch (git -C {worktree} switch --detach), "
                f"or set merge_to in [repos.{self._repo_name}] to a branch no working tree "
                "has checked out"
            )
        return f"switch {worktree} to another branch (git -C {worktree} switch --detach)"

    def _moved_on(self, key: str) -> StateError:
        return StateError(
            f"repository target {self.name!r}: branch {self.branch!r} moved on since the "
            f"change {key!r} was made, so a fast-forward is impossible",
            hint=f'set merge = "merge-commit" in [repos.{self._repo_name}], or make the '
            "change again from the branch's new head",
        )

    @property
    def _repo_name(self) -> str:
        return self.name.removeprefix("repo:")


def commit_message(goal: str, key: str, artifact: str = "") -> str:
    """A change's commit message: the goal's first line (cut on a word to fit 72
    characters), the goal in full when that is not all of it, and the trailers."""
    text = "\n".join(line.rstrip() for line in goal.replace("\0", "").splitlines()).strip()
    first = " ".join(text.splitlines()[0].split()) if text else ""
    subject = _cut(first, SUBJECT_LIMIT) if first else f"Shipyard change {key}"
    trailers = [f"{TASK}: {key}"]
    if artifact:
        trailers.append(f"{ARTIFACT}: {' '.join(artifact.split())}")
    trailers.append(f"{RELEASE}: {key}")
    body = f"{text}\n\n" if text and text != subject else ""
    return f"{subject}\n\n{body}" + "\n".join(trailers) + "\n"


def _cut(line: str, limit: int) -> str:
    if len(line) <= limit:
        return line
    room = line[: limit - 3]
    words = room.rsplit(" ", 1)[0] if " " in room else room
    # A first word longer than the line is cut inside it rather than left whole.
    return (words if len(words) >= limit // 2 else room).rstrip(" ,;:.") + "..."


def _identity(name: str, author: str) -> tuple[str, str] | None:
    if not author.strip():
        return None
    found = _AUTHOR.match(author)
    if found is None:
        raise ConfigError(
            f'repository target {name!r}: author {author!r} is not "Name <email>"',
            hint='set author = "Name <email>", e.g. "Shipyard <shipyard@example.com>"',
        )
    return found.group(1), found.group(2)


def _read_change(name: str, files: Mapping[str, bytes]) -> _Change:
    """The base, tree and patch of a change's artifact; InputError when they are not there."""
    missing = [f for f in CHANGE_FILES if f not in files]
    if missing:
        raise InputError(
            f"repository target {name!r}: a change's artifact needs {' and '.join(CHANGE_FILES)}"
            f" (it has {', '.join(sorted(files)) or 'no files'})",
            hint="release a repository change's artifact to a repository target",
        )
    try:
        summary = json.loads(files["change.json"].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"repository target {name!r}: change.json is not UTF-8 JSON ({exc})",
            hint="the artifact is damaged: make the change again",
        ) from exc
    if not isinstance(summary, dict):
        raise InputError(
            f"repository target {name!r}: change.json is not a JSON object",
            hint="the artifact is damaged: make the change again",
        )
    base, tree = summary.get("base"), summary.get("tree", "")
    if not isinstance(base, str) or not _OBJECT_ID.match(base):
        raise InputError(
            f"repository target {name!r}: change.json's base {base!r} is not a commit id",
            hint="a change's base is the 40 (or 64) hex digit id of the commit it was made on",
        )
    if tree is None or tree == "":
        tree = ""
    elif not isinstance(tree, str) or not _OBJECT_ID.match(tree):
        raise InputError(
            f"repository target {name!r}: change.json's tree {tree!r} is not a tree id",
            hint="a change's tree is the 40 (or 64) hex digit id git write-tree gives",
        )
    return _Change(base=base, tree=tree, patch=bytes(files["change.patch"]))
