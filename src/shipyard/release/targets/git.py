"""The ``git`` target: a release is a commit on a branch of a local git repository.

``deploy`` writes the candidate as one commit on its own branch, ``shipyard/<key>``, cut from
the head of the target branch; ``promote`` brings it into the target branch (a fast-forward,
or a merge commit); ``withdraw`` undoes a promotion with a revert commit. Nothing is ever
rewritten: the branch only moves forward, and ``shipyard/<key>`` stays after a promotion
because it names what was released.

Only plumbing is used (``hash-object``, ``read-tree`` on a temporary index, ``write-tree``,
``commit-tree``, ``merge-tree``, ``update-ref``): Shipyard never touches a working tree or the
repository's own index, so a branch checked out somewhere is refused rather than moved under
someone's feet. Every ref moves by compare-and-swap, so a branch that moved while Shipyard
was working is reported, never overwritten.

Commits carry trailers, which is where the state lives (there is no other record)::

    Shipyard-Release: <key>   the candidate commit, and the merge commit that promoted it
    Shipyard-Revert: <key>    the commit that withdrew it

A key is released once: after a withdrawal the same key cannot be promoted again (its
commits are already in the branch's history), so a second attempt needs a new key.

Git runs with a fixed environment: no global or system configuration, ``LC_ALL=C``, no
replace refs, and an author of ``Shipyard <shipyard@localhost>`` unless the repository's
own configuration names a user. The result of a call depends only on the repository.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from shipyard.errors import ConfigError, InputError, ShipyardError, StateError, ToolError
from shipyard.release._target import Deployed, Promoted

__all__ = ["GitTarget"]

RELEASE = "Shipyard-Release"
REVERT = "Shipyard-Revert"
PATH = "Shipyard-Path"
"""Trailer naming the folder a release commit writes (what the release's path is)."""
IDENTITY = ("Shipyard", "shipyard@localhost")
TIMEOUT = 120
NULL_SHA = "0" * 40
_FIELD, _VALUE = "\x1f", "\x1e"
_FORMAT = (
    f"--format=%H%x1f%P%x1f%s%x1f%(trailers:key={RELEASE},valueonly,separator=%x1e)"
    f"%x1f%(trailers:key={REVERT},valueonly,separator=%x1e)"
    f"%x1f%(trailers:key={PATH},valueonly,separator=%x1e)"
)

MergeMode = Literal["fast-forward", "merge-commit"]


@dataclass(frozen=True)
class _Commit:
    sha: str
    parents: tuple[str, ...]
    subject: str
    released: tuple[str, ...]
    """Values of the commit's ``Shipyard-Release`` trailers."""
    reverted: tuple[str, ...]
    """Values of the commit's ``Shipyard-Revert`` trailers."""
    path: str = ""
    """The ``Shipyard-Path`` trailer: the folder the release writes ('' when absent)."""


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
        self._git_dir: Path | None = None
        self._env: dict[str, str] = {}

    @property
    def _branch_ref(self) -> str:
        return f"refs/heads/{self.branch}"

    # -- the Target protocol ---------------------------------------------------------------

    def deploy(
        self, *, key: str, path: str, files: Mapping[str, bytes], title: str = ""
    ) -> Deployed:
        """Commit ``files`` as the folder ``path`` on a new branch ``shipyard/<key>``.

        The folder is replaced as a whole (files of it not in ``files`` are removed), the way
        a site release replaces a page folder. A no-op when the branch already holds the
        release of ``key``.
        """
        folder = _folder(path)
        entries = _names(folder, files)
        ref = self._candidate_ref(key)
        self._refuse_checked_out(ref)
        url_path = ref.removeprefix("refs/heads/")
        tip = self._rev(ref)
        if tip is not None:
            if key not in self._commit(tip).released:
                raise StateError(
                    f"git target {self.name!r}: branch {url_path} exists but its tip "
                    f"{tip[:12]} is not Shipyard's release of {key!r}",
                    hint=f"delete the branch (git branch -D {url_path}) or use another key",
                )
            return Deployed(key=key, url_path=url_path, version=tip, already=True)
        base = self._head()
        tree = self._write_tree(base, folder, entries)
        subject = _one_line(title) or f"shipyard release {key}"
        trailers = f"{RELEASE}: {key}\n{PATH}: {folder or '.'}\n"
        commit = self._commit_tree(tree, [base], f"{subject}\n\n{trailers}")
        self._move(ref, commit, None, f"shipyard: deploy {key}")
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
        url_path = ref.removeprefix("refs/heads/")
        self._refuse_checked_out()
        head = self._head()
        tip = self._rev(ref)
        if tip is None:
            if self._introduced(key, head) is None:
                raise StateError(
                    f"git target {self.name!r}: release {key!r} was not deployed "
                    f"(no branch {url_path})",
                    hint="deploy the release before promoting it",
                )
            return self._promoted_already(key, url_path, head)
        if key not in self._commit(tip).released:
            raise StateError(
                f"git target {self.name!r}: the tip of {url_path} ({tip[:12]}) is not "
                f"Shipyard's release of {key!r}",
                hint=f"delete the branch (git branch -D {url_path}) and deploy again",
            )
        if self._is_ancestor(tip, head):
            return self._promoted_already(key, self._live_path(tip, url_path), head)
        if self.merge == "fast-forward":
            if not self._is_ancestor(head, tip):
                raise StateError(
                    f"git target {self.name!r}: branch {self.branch!r} moved on since "
                    f"{key!r} was deployed, so a fast-forward is impossible",
                    hint='set merge = "merge-commit" on the target, or abort the release '
                    "and deploy it again",
                )
            new = tip
        else:
            tree, conflicts = self._merge_tree(head, tip)
            if conflicts:
                raise StateError(
                    f"git target {self.name!r}: release {key!r} conflicts with "
                    f"{self.branch!r} in {', '.join(conflicts)}",
                    hint="abort the release and deploy it again from the current branch",
                    details={"paths": conflicts},
                )
            message = f"Merge branch '{url_path}' into {self.branch}\n\n{RELEASE}: {key}\n"
            new = self._commit_tree(tree, [head, tip], message)
        self._move(self._branch_ref, new, head, f"shipyard: promote {key}")
        return Promoted(key=key, url_path=self._live_path(tip, url_path), version=new)

    def _live_path(self, tip: str, fallback: str) -> str:
        """``BRANCH:/FOLDER/``: where a promoted release lives (what a later one replaces)."""
        folder = self._commit(tip).path
        if not folder:
            return fallback
        return f"{self.branch}:/" + ("" if folder == "." else f"{folder}/")

    def abort(self, key: str) -> bool:
        """Delete ``shipyard/<key>`` unless it was promoted (then it names what is live)."""
        ref = self._candidate_ref(key)
        self._refuse_checked_out(ref)
        tip = self._rev(ref)
        if tip is None:
            return False
        head = self._rev(self._branch_ref)
        if head is not None and self._is_ancestor(tip, head):
            return False
        if key not in self._commit(tip).released:
            url_path = ref.removeprefix("refs/heads/")
            raise StateError(
                f"git target {self.name!r}: the tip of {url_path} ({tip[:12]}) is not "
                f"Shipyard's release of {key!r}, so Shipyard will not delete it",
                hint=f"look at the branch and delete it yourself (git branch -D {url_path})",
            )
        self._move(ref, None, tip, f"shipyard: abort {key}")
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
        tree, conflicts = self._revert_tree(head, intro)
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
        self._move(self._branch_ref, commit, head, f"shipyard: withdraw {key}")
        return commit

    def health(self, key: str) -> str | None:
        try:
            ref = self._candidate_ref(key)
            url_path = ref.removeprefix("refs/heads/")
            tip = self._rev(ref)
            if tip is not None:
                if key in self._commit(tip).released:
                    return None
                return f"the tip of {url_path} ({tip[:12]}) is not Shipyard's release of {key!r}"
            head = self._rev(self._branch_ref)
            if head is not None and self._introduced(key, head) is not None:
                return None
            return f"branch {url_path} does not exist in {self.repository}"
        except ShipyardError as error:
            return error.message

    # -- helpers for listings --------------------------------------------------------------

    def live_version(self) -> str | None:
        """The head commit of the branch, or None when the branch does not exist."""
        self._open()
        return self._rev(self._branch_ref)

    def releases(self) -> list[str]:
        """Keys released into the branch and not reverted, oldest first."""
        self._open()
        head = self._rev(self._branch_ref)
        if head is None:
            return []
        released = self._log("--first-parent", head, grep=f"{RELEASE}: ")
        reverted = {k for c in self._log(head, grep=f"{REVERT}: ") for k in c.reverted}
        keys = [k for c in reversed(released) for k in c.released if k not in reverted]
        return list(dict.fromkeys(keys))

    # -- internals -------------------------------------------------------------------------

    def _open(self) -> Path:
        """Find the repository's git directory and the identity to commit as (once)."""
        if self._git_dir is not None:
            return self._git_dir
        path = self.repository
        if not path.is_dir():
            raise ConfigError(
                f"git target {self.name!r}: repository {path} does not exist",
                hint=f"create it (git init --bare {path}) or point the target's repository "
                "at an existing one",
            )
        env = _base_env()
        # Stop git from finding an enclosing repository when this folder is not one.
        probe = {**env, "GIT_CEILING_DIRECTORIES": str(path.resolve().parent)}
        found = _run(["git", "rev-parse", "--absolute-git-dir"], cwd=path, env=probe)
        if found.returncode != 0:
            reason = found.stderr.decode(errors="replace").strip().splitlines()
            raise ConfigError(
                f"git target {self.name!r}: {path} is not a git repository"
                + (f" ({reason[-1]})" if reason else ""),
                hint=f"create one (git init --bare {path}) or point the target's repository "
                "at an existing one",
            )
        git_dir = Path(found.stdout.decode().strip())
        valid = _run(["git", "check-ref-format", self._branch_ref], cwd=git_dir, env=env)
        if valid.returncode != 0:
            raise ConfigError(
                f"git target {self.name!r}: {self.branch!r} is not a valid branch name",
                hint="set the target's branch to a git branch name such as main",
            )
        for var, key, default in (
            ("NAME", "user.name", IDENTITY[0]),
            ("EMAIL", "user.email", IDENTITY[1]),
        ):
            config = _run(["git", f"--git-dir={git_dir}", "config", "--get", key], git_dir, env)
            value = config.stdout.decode(errors="replace").strip() if config.returncode == 0 else ""
            env[f"GIT_AUTHOR_{var}"] = env[f"GIT_COMMITTER_{var}"] = value or default
        self._git_dir, self._env = git_dir, env
        return git_dir

    def _git(
        self,
        *args: str,
        stdin: bytes | None = None,
        index: Path | None = None,
        ok: Collection[int] = (0,),
    ) -> subprocess.CompletedProcess[bytes]:
        git_dir = self._open()
        env = {**self._env, "GIT_INDEX_FILE": str(index)} if index else self._env
        done = _run(["git", f"--git-dir={git_dir}", *args], git_dir, env, stdin)
        if done.returncode not in ok:
            raise self._failed(args, done)
        return done

    def _failed(self, args: tuple[str, ...], done: subprocess.CompletedProcess[bytes]) -> ToolError:
        stderr = done.stderr.decode(errors="replace").strip()
        last = stderr.splitlines()[-1] if stderr else f"exit status {done.returncode}"
        return ToolError(
            f"git target {self.name!r}: git {args[0]} failed in {self.repository}: {last}",
            hint="check the repository (git fsck) and that its disk is writable",
            details={"command": ["git", *args], "stderr": stderr},
        )

    def _candidate_ref(self, key: str) -> str:
        ref = f"refs/heads/shipyard/{key}"
        if not key or self._git("check-ref-format", ref, ok=(0, 1)).returncode != 0:
            raise InputError(
                f"release key {key!r} cannot name a git branch",
                hint="use a key of letters, digits, '-', '_' and '.'",
            )
        return ref

    def _refuse_checked_out(self, *refs: str) -> None:
        """Writes go through refs only, so a checked-out branch would desync its work tree."""
        guarded = {self._branch_ref, *refs}
        listing = self._git("worktree", "list", "--porcelain", "-z").stdout
        worktree = ""
        for field in listing.decode(errors="replace").split("\0"):
            if field.startswith("worktree "):
                worktree = field.removeprefix("worktree ")
            elif field.startswith("branch ") and field.removeprefix("branch ") in guarded:
                branch = field.removeprefix("branch refs/heads/")
                raise StateError(
                    f"git target {self.name!r}: branch {branch!r} is checked out in "
                    f"{worktree}, and Shipyard does not touch a working tree",
                    hint="point the target at a bare repository (git clone --bare) or at a "
                    "branch that is not checked out",
                )

    def _rev(self, ref: str) -> str | None:
        done = self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", ok=(0, 1))
        return done.stdout.decode().strip() or None

    def _head(self) -> str:
        head = self._rev(self._branch_ref)
        if head is None:
            raise ConfigError(
                f"git target {self.name!r}: branch {self.branch!r} does not exist in "
                f"{self.repository}",
                hint=f"push a first commit to {self.branch!r} (or create it with git branch "
                f"{self.branch} <commit>), or set the target's branch to an existing one",
            )
        return head

    def _is_ancestor(self, ancestor: str, descendant: str) -> bool:
        done = self._git("merge-base", "--is-ancestor", ancestor, descendant, ok=(0, 1))
        return done.returncode == 0

    def _log(self, *revs: str, grep: str = "") -> list[_Commit]:
        """Commits of ``revs``; with ``grep``, only those whose message contains it."""
        search = ["--fixed-strings", f"--grep={grep}"] if grep else []
        out = self._git("log", "-z", _FORMAT, *search, *revs, "--").stdout
        commits = []
        for record in out.decode(errors="replace").split("\0"):
            if not record:
                continue
            sha, parents, subject, released, reverted, path = record.split(_FIELD)
            commits.append(
                _Commit(
                    sha=sha,
                    parents=tuple(parents.split()),
                    subject=subject,
                    released=tuple(v.strip() for v in released.split(_VALUE) if v.strip()),
                    reverted=tuple(v.strip() for v in reverted.split(_VALUE) if v.strip()),
                    path=path.split(_VALUE)[0].strip(),
                )
            )
        return commits

    def _commit(self, sha: str) -> _Commit:
        return self._log("-1", sha)[0]

    def _introduced(self, key: str, head: str) -> _Commit | None:
        """The commit on the branch's first-parent line that brought ``key`` in.

        That is the merge commit of a merge-commit promotion, or the candidate itself after a
        fast-forward; both carry the key's trailer, and only one of them is first-parent.
        """
        for commit in self._log("--first-parent", head, grep=f"{RELEASE}: {key}"):
            if key in commit.released:
                return commit
        tip = self._rev(self._candidate_ref(key))
        if tip is not None and self._is_ancestor(tip, head):
            return self._commit(tip)
        return None

    def _reverted(self, key: str, head: str) -> bool:
        return any(key in c.reverted for c in self._log(head, grep=f"{REVERT}: {key}"))

    def _promoted_already(self, key: str, url_path: str, head: str) -> Promoted:
        if self._reverted(key, head):
            raise StateError(
                f"git target {self.name!r}: release {key!r} was withdrawn from "
                f"{self.branch!r} and cannot be promoted again",
                hint="deploy the files again under a new release key",
            )
        return Promoted(key=key, url_path=url_path, version=head, already=True)

    def _write_tree(
        self, base: str, folder: PurePosixPath | None, files: Mapping[str, bytes]
    ) -> str:
        """``base``'s tree with ``folder`` replaced by ``files`` (the whole tree for the root)."""
        with tempfile.TemporaryDirectory(prefix="shipyard-git-") as temp:
            index = Path(temp) / "index"
            lines: list[bytes] = []
            if folder is not None:
                self._git("read-tree", base, index=index)
                listed = self._git(
                    "ls-tree", "-r", "-z", "--name-only", "--full-tree", base, "--", str(folder)
                ).stdout
                lines += [b"0 " + NULL_SHA.encode() + b"\t" + p for p in listed.split(b"\0") if p]
            blobs = self._hash_objects(Path(temp), list(files.values()))
            lines += [
                f"100644 {sha}\t{name}".encode() for name, sha in zip(files, blobs, strict=True)
            ]
            if lines:
                stdin = b"\0".join(lines) + b"\0"
                self._git("update-index", "-z", "--index-info", stdin=stdin, index=index)
            return self._git("write-tree", index=index).stdout.decode().strip()

    def _hash_objects(self, temp: Path, contents: list[bytes]) -> list[str]:
        """Write the blobs in one ``hash-object`` call rather than one process per file."""
        if not contents:
            return []
        paths = []
        for number, data in enumerate(contents):
            blob = temp / f"blob-{number}"
            blob.write_bytes(data)
            paths.append(str(blob))
        stdin = "\n".join(paths).encode() + b"\n"
        out = self._git("hash-object", "-w", "--no-filters", "--stdin-paths", stdin=stdin)
        return out.stdout.decode().split()

    def _commit_tree(self, tree: str, parents: list[str], message: str) -> str:
        args = [arg for parent in parents for arg in ("-p", parent)]
        done = self._git("commit-tree", tree, *args, "-F", "-", stdin=message.encode())
        return done.stdout.decode().strip()

    def _merge_tree(self, ours: str, theirs: str) -> tuple[str, list[str]]:
        """The merged tree and the conflicting paths (empty when the merge is clean)."""
        done = self._git(
            "merge-tree",
            "--write-tree",
            "--name-only",
            "-z",
            "--no-messages",
            ours,
            theirs,
            ok=(0, 1),
        )
        tree, *rest = done.stdout.decode(errors="replace").split("\0")
        conflicts: list[str] = []
        if done.returncode == 1:
            for path in rest:
                if not path:
                    break
                if path not in conflicts:
                    conflicts.append(path)
        return tree, conflicts

    def _revert_tree(self, head: str, intro: _Commit) -> tuple[str, list[str]]:
        """``head`` with ``intro``'s change undone: merge its parent's tree, based on it.

        git 2.39's ``merge-tree`` has no ``--merge-base``, so the base is forced through
        history instead: a throwaway commit holding the parent's tree, whose only parent is
        ``intro``, has ``intro`` as its merge base with ``head``. It is never referenced, and
        ``git gc`` removes it.
        """
        undo = self._commit_tree(
            f"{intro.parents[0]}^{{tree}}", [intro.sha], f"shipyard: undo {intro.sha}\n"
        )
        return self._merge_tree(head, undo)

    def _move(self, ref: str, new: str | None, old: str | None, reason: str) -> None:
        """Move (or with ``new`` None, delete) ``ref`` only if it is still at ``old``."""
        if new is None:
            args = ("update-ref", "-m", reason, "-d", ref, old or "")
        else:
            args = ("update-ref", "-m", reason, ref, new, old or "")
        done = self._git(*args, ok=range(256))
        if done.returncode == 0:
            return
        now = self._rev(ref)
        if now != old:
            short = ref.removeprefix("refs/heads/")
            raise StateError(
                f"git target {self.name!r}: {short} moved while Shipyard was updating it "
                f"(expected {old[:12] if old else 'no branch'}, found "
                f"{now[:12] if now else 'no branch'}); nothing was overwritten",
                hint="another process changed the repository: run the step again",
            )
        raise self._failed(args, done)


def _base_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "LC_ALL": "C",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_LITERAL_PATHSPECS": "1",
    }


def _run(
    command: list[str], cwd: Path, env: Mapping[str, str], stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            cwd=cwd,
            env=dict(env),
            timeout=TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        if not cwd.is_dir():
            raise ConfigError(
                f"repository {cwd} disappeared", hint="restore it or fix the target's repository"
            ) from exc
        raise ConfigError(
            "git is not installed (or not on PATH)", hint="install git to use a git target"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolError(
            f"git {command[1]} took longer than {TIMEOUT} s in {cwd}",
            hint="check that the repository is not locked or on a hung disk",
        ) from exc
