"""Where a ``[repos.NAME]`` repository comes from: checked at start, opened before each task.

A local repository is read where it is and never written: working copies are clones of it.
A remote one (a URL) is mirrored once into ``STATE/repos/NAME/mirror.git`` and fetched
before each task; working copies are clones of the mirror. Either way, :class:`RepoSource`
names the git folder working copies clone from.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shipyard._config_sections import is_remote_path
from shipyard.config import RepoSettings
from shipyard.errors import ConfigError, InputError
from shipyard.repos._git import git, git_env

__all__ = [
    "RepoSource",
    "check_repo",
    "check_repos",
    "is_remote",
    "open_repo",
    "resolve_base",
]

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass(frozen=True, kw_only=True)
class RepoSource:
    """A repository ready to make working copies of."""

    name: str
    """The ``[repos.NAME]`` name."""
    location: str
    """The configured ``path``: a folder (resolved) or the remote URL."""
    remote: bool
    """True when the repository is a URL, mirrored in the state folder."""
    git_dir: Path
    """The git folder working copies are cloned from (the repository's, or the mirror)."""
    objects_dir: Path
    """Its object store, which working copies borrow from (read only)."""
    base: str
    """The configured base (a branch, tag or commit)."""
    work_dir: Path
    """Where this repository's working copies live: ``STATE/repos/NAME/copies``."""


def is_remote(path: str) -> bool:
    """True when ``path`` is a URL (``https://``, ``ssh://``, ``file://``, ``git@host:...``)."""
    return is_remote_path(path)


def _key(config: Path, name: str, field: str) -> str:
    return f"{config}: key 'repos.{name}.{field}'"


def _git_dir(name: str, folder: Path, config: Path) -> Path:
    where = _key(config, name, "path")
    if not folder.is_dir():
        raise ConfigError(
            f"{where}: {folder} does not exist",
            hint="point path at a git repository, relative to shipyard.toml, or at a URL",
        )
    # Stop git from finding an enclosing repository when this folder is not one.
    env = {**git_env(), "GIT_CEILING_DIRECTORIES": str(folder.resolve().parent)}
    found = git(["rev-parse", "--absolute-git-dir"], cwd=folder, env=env, ok=range(256))
    if found.returncode != 0:
        enclosing = git(["rev-parse", "--show-toplevel"], cwd=folder, ok=range(256))
        if enclosing.returncode == 0:
            top = enclosing.stdout.decode().strip()
            raise ConfigError(
                f"{where}: {folder} is inside the repository {top}, not its top folder",
                hint=f"point path at the repository's top folder ({top})",
            )
        reason = found.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(
            f"{where}: {folder} is not a git repository" + (f" ({reason[-1]})" if reason else ""),
            hint=f"run `git init` in {folder} and commit, or point path at a git repository",
        )
    return Path(found.stdout.decode().strip())


def _commit(git_dir: Path, ref: str) -> str | None:
    if not ref or ref.startswith("-"):
        return None  # never an option to git
    done = git(
        [f"--git-dir={git_dir}", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=git_dir,
        ok=range(256),
    )
    out = done.stdout.decode().strip()
    return out if done.returncode == 0 and out else None


def _branches(git_dir: Path) -> list[str]:
    done = git(
        [f"--git-dir={git_dir}", "for-each-ref", "--format=%(refname:short)", "refs/heads"],
        cwd=git_dir,
        ok=range(256),
    )
    return done.stdout.decode(errors="replace").split()


def _check_base(name: str, git_dir: Path, base: str, config: Path) -> None:
    if _commit(git_dir, base) is None:
        branches = _branches(git_dir)
        raise ConfigError(
            f"{_key(config, name, 'base')}: {base!r} is not a branch, tag or commit of "
            f"the repository",
            hint="set base to one of its branches: "
            + (", ".join(branches[:10]) or "(none: commit something first)"),
        )


def _check_branch_name(name: str, field: str, branch: str, config: Path) -> None:
    done = git(["check-ref-format", f"refs/heads/{branch}"], cwd=config.parent, ok=range(256))
    if done.returncode != 0:
        raise ConfigError(
            f"{_key(config, name, field)}: {branch!r} is not a valid branch name",
            hint="use a git branch name such as main or release/next",
        )


def check_repo(name: str, settings: RepoSettings, *, root: Path) -> None:
    """Check at start what parsing cannot: that ``path`` is a git repository (its top
    folder) and ``base`` one of its commits; a remote's base is asked of the remote.
    ConfigError names ``repos.NAME.path`` or ``repos.NAME.base`` and the fix."""
    config = root / "shipyard.toml"
    if settings.merge_to is not None:
        _check_branch_name(name, "merge_to", settings.merge_to, config)
    if is_remote(settings.path):
        if _SHA.match(settings.base):
            return  # a commit id: only a fetch can tell, and the first task's fetch does
        found = git(
            ["ls-remote", "--end-of-options", settings.path, settings.base],
            cwd=root,
            env=git_env(remote=True),
            ok=range(256),
        )
        if found.returncode != 0:
            reason = found.stderr.decode(errors="replace").strip().splitlines()
            raise ConfigError(
                f"{_key(config, name, 'path')}: cannot reach {settings.path}"
                + (f" ({reason[-1]})" if reason else ""),
                hint="check the URL, the network and your git credentials for it",
            )
        if not found.stdout.strip():
            raise ConfigError(
                f"{_key(config, name, 'base')}: the remote {settings.path} has no branch or "
                f"tag {settings.base!r}",
                hint="set base to one of the remote's branches (git ls-remote --heads URL)",
            )
        return
    git_dir = _git_dir(name, (root / settings.path).expanduser(), config)
    _check_base(name, git_dir, settings.base, config)


def check_repos(repos: Mapping[str, RepoSettings], *, root: Path) -> None:
    """:func:`check_repo` for each ``[repos.NAME]``."""
    for name, settings in repos.items():
        check_repo(name, settings, root=root)


def open_repo(
    name: str, settings: RepoSettings, *, root: Path, state_dir: Path, fetch: bool = True
) -> RepoSource:
    """The repository, ready for working copies: a local one is checked; a remote one is
    mirrored (the first time) and fetched, so its branches are the remote's as of now
    (``fetch=False``: the mirror as it is, for steps of a task whose base is already in it)."""
    config = root / "shipyard.toml"
    home = state_dir / "repos" / name
    if is_remote(settings.path):
        mirror = home / "mirror.git"
        if not fetch and (mirror / "HEAD").is_file():
            git_dir = mirror
        else:
            git_dir = _fetched_mirror(name, settings.path, home)
        _check_base(name, git_dir, settings.base, config)
        location = settings.path
    else:
        folder = (root / settings.path).expanduser().resolve()
        git_dir = _git_dir(name, folder, config)
        _check_base(name, git_dir, settings.base, config)
        location = str(folder)
    objects = git(
        [f"--git-dir={git_dir}", "rev-parse", "--git-path", "objects"], cwd=git_dir
    ).stdout.decode()
    objects_dir = (git_dir / objects.strip()).resolve()
    return RepoSource(
        name=name,
        location=location,
        remote=is_remote(settings.path),
        git_dir=git_dir,
        objects_dir=objects_dir,
        base=settings.base,
        work_dir=home / "copies",
    )


def resolve_base(source: RepoSource, ref: str | None = None) -> str:
    """The commit id of ``ref`` (a branch, tag or commit; default the configured base).
    An unknown ``ref`` given by the caller is an InputError naming the repository."""
    wanted = source.base if ref is None else ref
    commit = _commit(source.git_dir, wanted)
    if commit is None:
        branches = _branches(source.git_dir)
        error = ConfigError if ref is None else InputError
        raise error(
            f"repository {source.name!r}: {wanted!r} is not a branch, tag or commit of "
            f"{source.location}",
            hint="use one of its branches: " + (", ".join(branches[:10]) or "(none)"),
        )
    return commit


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if need be) across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _fetched_mirror(name: str, url: str, home: Path) -> Path:
    mirror = home / "mirror.git"
    remote = git_env(remote=True)
    what = f"repository {name!r} ({url})"
    with locked(home / "mirror.lock"):
        if not (mirror / "HEAD").is_file():
            temp = home / f".mirror-{secrets.token_hex(4)}"
            try:
                git(
                    [
                        "clone",
                        "--mirror",
                        "--quiet",
                        "--template=",
                        "--end-of-options",
                        url,
                        str(temp),
                    ],
                    cwd=home,
                    env=remote,
                    what=what,
                )
                shutil.rmtree(mirror, ignore_errors=True)
                os.rename(temp, mirror)
            finally:
                shutil.rmtree(temp, ignore_errors=True)
        else:
            git([f"--git-dir={mirror}", "remote", "set-url", "origin", url], cwd=mirror)
            git(
                [f"--git-dir={mirror}", "fetch", "--prune", "--quiet", "origin"],
                cwd=mirror,
                env=remote,
                what=what,
            )
    return mirror.resolve()
