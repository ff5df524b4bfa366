"""Git plumbing for the ``git`` target: one repository driven through ``hash-object``,
``read-tree`` on a temporary index, ``write-tree``, ``commit-tree``, ``merge-tree`` and
``update-ref``, never a working tree or the repository's own index.

:class:`GitRepository` knows git, not releases: what a key, a candidate branch or a
promotion is stays in :mod:`shipyard.release.targets.git`. Git runs with a fixed environment
(no global or system configuration, ``LC_ALL=C``, no replace refs) and the repository's own
identity, else ``Shipyard <shipyard@localhost>``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shipyard.errors import ConfigError, StateError, ToolError

__all__ = [
    "ARTIFACT",
    "PATH",
    "RELEASE",
    "REVERT",
    "Commit",
    "GitRepository",
    "open_repository",
]

RELEASE = "Shipyard-Release"
REVERT = "Shipyard-Revert"
PATH = "Shipyard-Path"
"""Trailer naming the folder a release commit writes (what the release's path is)."""
ARTIFACT = "Shipyard-Artifact"
"""Trailer naming the artifact a release commit was made from."""
IDENTITY = ("Shipyard", "shipyard@localhost")
TIMEOUT = 120
NULL_SHA = "0" * 40
_FIELD, _VALUE = "\x1f", "\x1e"
_FORMAT = (
    f"--format=%H%x1f%P%x1f%s%x1f%(trailers:key={RELEASE},valueonly,separator=%x1e)"
    f"%x1f%(trailers:key={REVERT},valueonly,separator=%x1e)"
    f"%x1f%(trailers:key={PATH},valueonly,separator=%x1e)"
)


@dataclass(frozen=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    subject: str
    released: tuple[str, ...]
    """Values of the commit's ``Shipyard-Release`` trailers."""
    reverted: tuple[str, ...]
    """Values of the commit's ``Shipyard-Revert`` trailers."""
    path: str = ""
    """The ``Shipyard-Path`` trailer: the folder the release writes ('' when absent)."""


def open_repository(
    name: str,
    path: Path,
    branch: str | None,
    *,
    identity: tuple[str, str] | None = None,
) -> GitRepository:
    """The repository at ``path`` (a git folder, or a repository's top folder) for the
    target ``name``, committing as ``identity`` (name, email), else as the repository's own
    user, else as Shipyard; ConfigError when there is none or ``branch`` (when given) cannot
    name a branch."""
    if not path.is_dir():
        raise ConfigError(
            f"git target {name!r}: repository {path} does not exist",
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
            f"git target {name!r}: {path} is not a git repository"
            + (f" ({reason[-1]})" if reason else ""),
            hint=f"create one (git init --bare {path}) or point the target's repository "
            "at an existing one",
        )
    git_dir = Path(found.stdout.decode().strip())
    if branch is not None and not _valid_branch(branch, git_dir, env):
        raise ConfigError(
            f"git target {name!r}: {branch!r} is not a valid branch name",
            hint="set the target's branch to a git branch name such as main",
        )
    for number, (var, key, default) in enumerate(
        (("NAME", "user.name", IDENTITY[0]), ("EMAIL", "user.email", IDENTITY[1]))
    ):
        if identity is not None:
            value = identity[number]
        else:
            config = _run(["git", f"--git-dir={git_dir}", "config", "--get", key], git_dir, env)
            ok = config.returncode == 0
            value = config.stdout.decode(errors="replace").strip() if ok else ""
        env[f"GIT_AUTHOR_{var}"] = env[f"GIT_COMMITTER_{var}"] = value or default
    return GitRepository(name=name, path=path, git_dir=git_dir, env=env)


def _valid_branch(branch: str, git_dir: Path, env: Mapping[str, str]) -> bool:
    return _run(["git", "check-ref-format", f"refs/heads/{branch}"], git_dir, env).returncode == 0


class GitRepository:
    """One opened repository; its errors name the target ``name`` and the ``path`` given."""

    def __init__(self, *, name: str, path: Path, git_dir: Path, env: dict[str, str]) -> None:
        self.name, self.path, self.git_dir, self.env = name, path, git_dir, env

    def git(
        self,
        *args: str,
        stdin: bytes | None = None,
        index: Path | None = None,
        ok: Collection[int] = (0,),
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``git ARGS`` on the repository (on the temporary ``index`` when given)."""
        env = {**self.env, "GIT_INDEX_FILE": str(index)} if index else self.env
        done = _run(["git", f"--git-dir={self.git_dir}", *args], self.git_dir, env, stdin)
        if done.returncode not in ok:
            raise self.failed(args, done)
        return done

    def failed(self, args: tuple[str, ...], done: subprocess.CompletedProcess[bytes]) -> ToolError:
        stderr = done.stderr.decode(errors="replace").strip()
        last = stderr.splitlines()[-1] if stderr else f"exit status {done.returncode}"
        return ToolError(
            f"git target {self.name!r}: git {args[0]} failed in {self.path}: {last}",
            hint="check the repository (git fsck) and that its disk is writable",
            details={"command": ["git", *args], "stderr": stderr},
        )

    def rev(self, ref: str) -> str | None:
        """The commit ``ref`` names, or None when there is none."""
        done = self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", ok=(0, 1))
        return done.stdout.decode().strip() or None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        done = self.git("merge-base", "--is-ancestor", ancestor, descendant, ok=(0, 1))
        return done.returncode == 0

    def log(self, *revs: str, grep: str = "") -> list[Commit]:
        """Commits of ``revs``; with ``grep``, only those whose message contains it."""
        search = ["--fixed-strings", f"--grep={grep}"] if grep else []
        out = self.git("log", "-z", _FORMAT, *search, *revs, "--").stdout
        commits = []
        for record in out.decode(errors="replace").split("\0"):
            if not record:
                continue
            sha, parents, subject, released, reverted, path = record.split(_FIELD)
            commits.append(
                Commit(
                    sha=sha,
                    parents=tuple(parents.split()),
                    subject=subject,
                    released=tuple(v.strip() for v in released.split(_VALUE) if v.strip()),
                    reverted=tuple(v.strip() for v in reverted.split(_VALUE) if v.strip()),
                    path=path.split(_VALUE)[0].strip(),
                )
            )
        return commits

    def commit(self, sha: str) -> Commit:
        return self.log("-1", sha)[0]

    def write_tree(
        self, base: str, folder: PurePosixPath | None, files: Mapping[str, bytes]
    ) -> str:
        """``base``'s tree with ``folder`` replaced by ``files`` (the whole tree for the root)."""
        with tempfile.TemporaryDirectory(prefix="shipyard-git-") as temp:
            index = Path(temp) / "index"
            lines: list[bytes] = []
            if folder is not None:
                self.git("read-tree", base, index=index)
                listed = self.git(
                    "ls-tree", "-r", "-z", "--name-only", "--full-tree", base, "--", str(folder)
                ).stdout
                lines += [b"0 " + NULL_SHA.encode() + b"\t" + p for p in listed.split(b"\0") if p]
            blobs = self._hash_objects(Path(temp), list(files.values()))
            lines += [
                f"100644 {sha}\t{name}".encode() for name, sha in zip(files, blobs, strict=True)
            ]
            if lines:
                stdin = b"\0".join(lines) + b"\0"
                self.git("update-index", "-z", "--index-info", stdin=stdin, index=index)
            return self.git("write-tree", index=index).stdout.decode().strip()

    def patched_tree(self, base: str, patch: bytes) -> str:
        """``base``'s tree with ``patch`` (``git diff --binary --full-index`` output) applied.

        The patch goes onto a temporary index (``read-tree``, ``apply --cached``): no
        working tree is read or written. StateError when it does not apply.
        """
        with tempfile.TemporaryDirectory(prefix="shipyard-git-") as temp:
            index = Path(temp) / "index"
            self.git("read-tree", base, index=index)
            if patch.strip():
                # --whitespace=nowarn: the repository's apply.whitespace must not refuse a
                # change its own tests already passed.
                args = ("apply", "--cached", "--binary", "--whitespace=nowarn", "-")
                done = self.git(*args, stdin=patch, index=index, ok=range(256))
                if done.returncode != 0:
                    stderr = done.stderr.decode(errors="replace").strip()
                    first = stderr.splitlines()[0] if stderr else f"exit {done.returncode}"
                    raise StateError(
                        f"git target {self.name!r}: the change's patch does not apply to "
                        f"{base[:12]} in {self.path}: {first}",
                        hint="the change was not made against this commit's tree: "
                        "make the change again",
                        details={"base": base, "stderr": stderr[-4000:]},
                    )
            return self.git("write-tree", index=index).stdout.decode().strip()

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
        out = self.git("hash-object", "-w", "--no-filters", "--stdin-paths", stdin=stdin)
        return out.stdout.decode().split()

    def commit_tree(self, tree: str, parents: list[str], message: str) -> str:
        args = [arg for parent in parents for arg in ("-p", parent)]
        done = self.git("commit-tree", tree, *args, "-F", "-", stdin=message.encode())
        return done.stdout.decode().strip()

    def merge_tree(self, ours: str, theirs: str) -> tuple[str, list[str]]:
        """The merged tree and the conflicting paths (empty when the merge is clean)."""
        done = self.git(
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

    def revert_tree(self, head: str, intro: Commit) -> tuple[str, list[str]]:
        """``head`` with ``intro``'s change undone: merge its parent's tree, based on it.

        git 2.39's ``merge-tree`` has no ``--merge-base``, so the base is forced through
        history instead: a throwaway commit holding the parent's tree, whose only parent is
        ``intro``, has ``intro`` as its merge base with ``head``. It is never referenced, and
        ``git gc`` removes it.
        """
        undo = self.commit_tree(
            f"{intro.parents[0]}^{{tree}}", [intro.sha], f"shipyard: undo {intro.sha}\n"
        )
        return self.merge_tree(head, undo)

    def move(self, ref: str, new: str | None, old: str | None, reason: str) -> None:
        """Move (or with ``new`` None, delete) ``ref`` only if it is still at ``old``."""
        if new is None:
            args = ("update-ref", "-m", reason, "-d", ref, old or "")
        else:
            args = ("update-ref", "-m", reason, ref, new, old or "")
        done = self.git(*args, ok=range(256))
        if done.returncode == 0:
            return
        now = self.rev(ref)
        if now != old:
            short = ref.removeprefix("refs/heads/")
            raise StateError(
                f"git target {self.name!r}: {short} moved while Shipyard was updating it "
                f"(expected {old[:12] if old else 'no branch'}, found "
                f"{now[:12] if now else 'no branch'}); nothing was overwritten",
                hint="another process changed the repository: run the step again",
            )
        raise self.failed(args, done)


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
