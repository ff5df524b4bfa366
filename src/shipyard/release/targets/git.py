"""The ``git`` target: a release is a commit on a branch of a local git repository.

``deploy`` writes the candidate as one commit on its own branch, ``shipyard/<key>``, cut from
the head of the target branch; ``promote`` brings it into the target branch (a fast-forward,
or a merge commit); ``withdraw`` undoes a promotion with a revert commit. Nothing is ever
rewritten: the branch only moves forward, and ``shipyard/<key>`` stays after a promotion
because it names what was released.

Only plumbing is used (``hash-object``, ``read-tree`` on a temporary index, ``write-tree``,
``commit-tree``, ``merge-tree``, ``update-ref``; the calls live in ``_git_plumbing.py``):
Shipyard never touches a working tree or the repository's own index, so a branch checked out
somewhere is refused rather than moved under someone's feet. Every ref moves by
compare-and-swap, so a branch that moved while Shipyard was working is reported, never
overwritten.

Commits carry trailers, which is where the state lives (there is no other record)::

    Shipyard-Release: <key>   the candidate commit, and the merge commit that promoted it
    Shipyard-Revert: <key>    the commit that withdrew it
    Shipyard-Artifact: <id>   the artifact the candidate was made from (when deploy is told)

A key is released once: after a withdrawal the same key cannot be promoted again (its
commits are already in the branch's history), so a second attempt needs a new key.

Git runs with a fixed environment: no global or system configuration, ``LC_ALL=C``, no
replace refs, and an author of ``Shipyard <shipyard@localhost>`` unless the repository's
own configuration names a user. The result of a call depends only on the repository.

The ``repo`` target (``repo.py``) is this target with another ``deploy``: a repository
change's patch committed on its base, merged into ``merge_to`` only when there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Literal

from shipyard.errors import ConfigError, InputError, ShipyardError, StateError
from shipyard.release._target import Deployed, Promoted
from shipyard.release.targets._git_plumbing import (
    ARTIFACT,
    PATH,
    RELEASE,
    REVERT,
    Commit,
    GitRepository,
    open_repository,
)

__all__ = ["GitTarget", "MergeMode"]

MergeMode = Literal["fast-forward", "merge-commit"]


def _folder(path: str) -> PurePosixPath | None:
    """The release folder inside the repository; None for the repository root."""
    if path.strip("/") == "":
        return None
    clean = PurePosixPath(path.rstrip("/"))
    if clean.is_absolute() or ".." in clean.parts:
        raise InputError(
            f"release path {path!r} leaves the repository",
            hint='use a path relative to the repository root ("" or "/" for the root itself)',
        )
    return clean


def _names(folder: PurePosixPath | None, files: Mapping[str, bytes]) -> dict[str, bytes]:
    """Repository paths for the release's files, refusing names that escape the folder."""
    out: dict[str, bytes] = {}
    for name, data in files.items():
        clean = PurePosixPath(name)
        if not name or clean.is_absolute() or ".." in clean.parts or str(clean) == ".":
            raise InputError(
                f"file name {name!r} is not a path inside the release folder",
                hint="name files relative to the release path, without '..'",
            )
        full = str(folder / clean if folder else clean)
        if full in out:
            raise InputError(f"file {name!r} is given twice", hint="name each file once")
        out[full] = data
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())


class GitTarget:
    """Releases into ``branch`` of the repository at ``repository`` (bare, or not checked out).

    ``merge`` says how a promotion enters the branch: ``fast-forward`` moves the branch to the
    candidate and refuses when the branch moved on since the deploy; ``merge-commit`` always
    records a merge commit, so releases deployed from an older head still go in.
    """

    kind = "git"
    served = False

    def __init__(
        self,
        name: str,
        repository: Path,
        *,
        branch: str = "main",
        merge: MergeMode = "fast-forward",
    ) -> None:
        if merge not in ("fast-forward", "merge-commit"):
            raise ConfigError(
                f"git target {name!r}: unknown merge mode {merge!r}",
                hint='set merge = "fast-forward" or merge = "merge-commit"',
            )
        self.name, self.repository, self.branch, self.merge = name, repository, branch, merge
        self._opened: GitRepository | None = None

    @property
    def _branch_ref(self) -> str:
        return f"refs/heads/{self.branch}"

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
        """Commit ``files`` as the folder ``path`` on a new branch ``shipyard/<key>``.

        The folder is replaced as a whole (files of it not in ``files`` are removed), the way
        a site release replaces a page folder. A no-op when the branch already holds the
        release of ``key``. ``artifact`` (when given) is recorded as a trailer.
        """
        folder = _folder(path)
        entries = _names(folder, files)
        ref = self._candidate_ref(key)
        repo = self._repo()
        self._refuse_checked_out(ref)
        url_path = ref.removeprefix("refs/heads/")
        deployed = self._deployed(key, ref)
        if deployed is not None:
            return deployed
        base = self._head()
        tree = repo.write_tree(base, folder, entries)
        subject = _one_line(title) or f"shipyard release {key}"
        trailers = f"{RELEASE}: {key}\n{PATH}: {folder or '.'}\n"
        if artifact:
            trailers += f"{ARTIFACT}: {_one_line(artifact)}\n"
        commit = self._commit_tree(tree, [base], f"{subject}\n\n{trailers}")
        repo.move(ref, commit, None, f"shipyard: deploy {key}")
        return Deployed(key=key, url_path=url_path, version=commit)

    def shift(self, key: str, weight: float) -> None:
        """A git branch takes no traffic: only "none" (0) and "all" (100, done by promote)."""
        if weight not in (0, 100):
            raise StateError(
                f"git target {self.name!r} cannot send {weight:g} % of traffic to {key!r}",
                hint="git targets release without stages: promote the release, or abort it",
            )

    def promote(self, key: str) -> Promoted:
        """Bring ``shipyard/<key>`` into the branch; a no-op when it is there already."""
        ref = self._candidate_ref(key)
        repo = self._repo()
        url_path = ref.removeprefix("refs/heads/")
        self._refuse_checked_out()
        head = self._head()
        tip = repo.rev(ref)
        if tip is None:
            if self._introduced(key, head) is None:
                raise StateError(
                    f"git target {self.name!r}: release {key!r} was not deployed "
                    f"(no branch {url_path})",
                    hint="deploy the release before promoting it",
                )
            return self._promoted_already(key, url_path, head)
        if key not in repo.commit(tip).released:
            raise StateError(
                f"git target {self.name!r}: the tip of {url_path} ({tip[:12]}) is not "
                f"Shipyard's release of {key!r}",
                hint=f"delete the branch (git branch -D {url_path}) and deploy again",
            )
        if repo.is_ancestor(tip, head):
            return self._promoted_already(key, self._live_path(tip, url_path), head)
        if self.merge == "fast-forward":
            if not repo.is_ancestor(head, tip):
                raise self._moved_on(key)
            new = tip
        else:
            tree, conflicts = repo.merge_tree(head, tip)
            if conflicts:
                raise StateError(
                    f"git target {self.name!r}: release {key!r} conflicts with "
                    f"{self.branch!r} in {', '.join(conflicts)}",
                    hint="abort the release and deploy it again from the current branch",
                    details={"paths": conflicts},
                )
            message = f"Merge branch '{url_path}' into {self.branch}\n\n{RELEASE}: {key}\n"
            new = self._commit_tree(tree, [head, tip], message)
        repo.move(self._branch_ref, new, head, f"shipyard: promote {key}")
        return Promoted(key=key, url_path=self._live_path(tip, url_path), version=new)

    def _live_path(self, tip: str, fallback: str) -> str:
        """``BRANCH:/FOLDER/``: where a promoted release lives (what a later one replaces)."""
        folder = self._repo().commit(tip).path
        if not folder:
            return fallback
        return f"{self.branch}:/" + ("" if folder == "." else f"{folder}/")

    def abort(self, key: str) -> bool:
        """Delete ``shipyard/<key>`` unless it was promoted (then it names what is live)."""
        ref = self._candidate_ref(key)
        repo = self._repo()
        self._refuse_checked_out(ref)
        tip = repo.rev(ref)
        if tip is None:
            return False
        head = self._live_head()
        if head is not None and repo.is_ancestor(tip, head):
            return False
        if key not in repo.commit(tip).released:
            url_path = ref.removeprefix("refs/heads/")
            raise StateError(
                f"git target {self.name!r}: the tip of {url_path} ({tip[:12]}) is not "
                f"Shipyard's release of {key!r}, so Shipyard will not delete it",
                hint=f"look at the branch and delete it yourself (git branch -D {url_path})",
            )
        repo.move(ref, None, tip, f"shipyard: abort {key}")
        return True

    def withdraw(self, key: str) -> str | None:
        """Revert the commit that brought ``key`` into the branch, with a new commit on top.

        The revert is a three-way merge whose base is that commit and whose other side is
        its first parent, so later changes to the same files survive and real clashes are
        reported as conflicts. The branch's new head, or None when ``key`` was never promoted
        or is already reverted.
        """
        self._candidate_ref(key)
        self._refuse_checked_out()
        repo = self._repo()
        head = self._head()
        if self._reverted(key, head):
            return None
        intro = self._introduced(key, head)
        if intro is None:
            return None
        if not intro.parents:
            raise StateError(
                f"git target {self.name!r}: release {key!r} is a root commit and cannot be "
                "reverted",
                hint="withdraw it by hand",
            )
        tree, conflicts = repo.revert_tree(head, intro)
        if conflicts:
            raise StateError(
                f"git target {self.name!r}: withdrawing {key!r} conflicts with later changes "
                f"to {self.branch!r} in {', '.join(conflicts)}",
                hint=f"revert {intro.sha[:12]} by hand and resolve the conflicts",
                details={"paths": conflicts},
            )
        message = (
            f'Revert "{intro.subject}"\n\nThis reverts commit {intro.sha}.\n\n{REVERT}: {key}\n'
        )
        commit = self._commit_tree(tree, [head], message)
        repo.move(self._branch_ref, commit, head, f"shipyard: withdraw {key}")
        return commit

    def health(self, key: str) -> str | None:
        try:
            ref = self._candidate_ref(key)
            repo = self._repo()
            url_path = ref.removeprefix("refs/heads/")
            tip = repo.rev(ref)
            if tip is not None:
                if key in repo.commit(tip).released:
                    return None
                return f"the tip of {url_path} ({tip[:12]}) is not Shipyard's release of {key!r}"
            head = self._live_head()
            if head is not None and self._introduced(key, head) is not None:
                return None
            return f"branch {url_path} does not exist in {self.repository}"
        except ShipyardError as error:
            return error.message

    # -- helpers for listings --------------------------------------------------------------

    def live_version(self) -> str | None:
        """The head commit of the branch, or None when the branch does not exist."""
        return self._live_head()

    def releases(self) -> list[str]:
        """Keys released into the branch and not reverted, oldest first."""
        repo = self._repo()
        head = self._live_head()
        if head is None:
            return []
        released = repo.log("--first-parent", head, grep=f"{RELEASE}: ")
        reverted = {k for c in repo.log(head, grep=f"{REVERT}: ") for k in c.reverted}
        keys = [k for c in reversed(released) for k in c.released if k not in reverted]
        return list(dict.fromkeys(keys))

    # -- internals -------------------------------------------------------------------------

    def _repo(self) -> GitRepository:
        """The repository, opened on first use (and checked then, not when configured)."""
        if self._opened is None:
            self._opened = open_repository(self.name, self.repository, self.branch)
        return self._opened

    def _candidate_ref(self, key: str) -> str:
        ref = f"refs/heads/shipyard/{key}"
        if not key or self._repo().git("check-ref-format", ref, ok=(0, 1)).returncode != 0:
            raise InputError(
                f"release key {key!r} cannot name a git branch",
                hint="use a key of letters, digits, '-', '_' and '.'",
            )
        return ref

    def _refuse_checked_out(self, *refs: str) -> None:
        """Writes go through refs only, so a checked-out branch would desync its work tree."""
        guarded = {*refs, *([self._branch_ref] if self.branch else [])}
        listing = self._repo().git("worktree", "list", "--porcelain", "-z").stdout
        worktree = ""
        for field in listing.decode(errors="replace").split("\0"):
            if field.startswith("worktree "):
                worktree = field.removeprefix("worktree ")
            elif field.startswith("branch ") and field.removeprefix("branch ") in guarded:
                branch = field.removeprefix("branch refs/heads/")
                raise StateError(
                    f"git target {self.name!r}: branch {branch!r} is checked out in "
                    f"{worktree}, and Shipyard does not touch a working tree",
                    hint=self._checked_out_hint(branch, worktree),
                )

    def _checked_out_hint(self, branch: str, worktree: str) -> str:
        return (
            "point the target at a bare repository (git clone --bare) or at a branch that "
            "is not checked out"
        )

    def _moved_on(self, key: str) -> StateError:
        """The error for a fast-forward the branch's new commits make impossible."""
        return StateError(
            f"git target {self.name!r}: branch {self.branch!r} moved on since {key!r} was "
            "deployed, so a fast-forward is impossible",
            hint='set merge = "merge-commit" on the target, or abort the release and deploy '
            "it again",
        )

    def _live_head(self) -> str | None:
        """The head of the branch releases go into; None when it does not exist."""
        return self._repo().rev(self._branch_ref)

    def _deployed(self, key: str, ref: str) -> Deployed | None:
        """The release of ``key`` when ``ref`` holds it already; None when there is no
        ``ref``; StateError when ``ref`` is not Shipyard's release of ``key``."""
        repo = self._repo()
        url_path = ref.removeprefix("refs/heads/")
        tip = repo.rev(ref)
        if tip is None:
            return None
        if key not in repo.commit(tip).released:
            raise StateError(
                f"git target {self.name!r}: branch {url_path} exists but its tip "
                f"{tip[:12]} is not Shipyard's release of {key!r}",
                hint=f"delete the branch (git branch -D {url_path}) or use another key",
            )
        return Deployed(key=key, url_path=url_path, version=tip, already=True)

    def _head(self) -> str:
        head = self._repo().rev(self._branch_ref)
        if head is None:
            raise ConfigError(
                f"git target {self.name!r}: branch {self.branch!r} does not exist in "
                f"{self.repository}",
                hint=f"push a first commit to {self.branch!r} (or create it with git branch "
                f"{self.branch} <commit>), or set the target's branch to an existing one",
            )
        return head

    def _introduced(self, key: str, head: str) -> Commit | None:
        """The commit on the branch's first-parent line that brought ``key`` in.

        That is the merge commit of a merge-commit promotion, or the candidate itself after a
        fast-forward; both carry the key's trailer, and only one of them is first-parent.
        """
        repo = self._repo()
        for commit in repo.log("--first-parent", head, grep=f"{RELEASE}: {key}"):
            if key in commit.released:
                return commit
        tip = repo.rev(self._candidate_ref(key))
        if tip is not None and repo.is_ancestor(tip, head):
            return repo.commit(tip)
        return None

    def _reverted(self, key: str, head: str) -> bool:
        return any(key in c.reverted for c in self._repo().log(head, grep=f"{REVERT}: {key}"))

    def _promoted_already(self, key: str, url_path: str, head: str) -> Promoted:
        if self._reverted(key, head):
            raise StateError(
                f"git target {self.name!r}: release {key!r} was withdrawn from "
                f"{self.branch!r} and cannot be promoted again",
                hint="deploy the files again under a new release key",
            )
        return Promoted(key=key, url_path=url_path, version=head, already=True)

    def _commit_tree(self, tree: str, parents: list[str], message: str) -> str:
        # The commits that land on a branch go through the target rather than straight to
        # the repository: one seam, where a test moves the branch under a promotion.
        return self._repo().commit_tree(tree, parents, message)
