"""Running git for repositories: a fixed environment, no hooks, never a shell.

Every git command Shipyard runs on a repository, a mirror or a working copy goes through
:func:`git`. It runs with no system configuration, no global configuration (except for the
commands that talk to a remote, which need the user's credentials and URL rewrites), no
hooks, no filesystem monitor, ``LC_ALL=C`` and literal pathspecs, so that neither the
machine's settings nor a working copy an agent has touched can make git run a command.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from shipyard.errors import ConfigError, ToolError

__all__ = ["GIT_TIMEOUT", "git", "git_env", "git_failed"]

GIT_TIMEOUT = 300.0
"""Seconds any one git command may take (a fetch of a large remote included)."""

_SAFE = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "core.quotePath=false",
    "-c",
    "advice.detachedHead=false",
)
_REMOTE_PASSTHROUGH = (
    "HOME",
    "XDG_CONFIG_HOME",
    "SSH_AUTH_SOCK",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


def git_env(*, remote: bool = False) -> dict[str, str]:
    """The environment git runs with. ``remote``: also the user's global configuration and
    what reaching a remote needs (credentials helpers, SSH agent, proxies)."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_LITERAL_PATHSPECS": "1",
        "GIT_AUTHOR_NAME": "Shipyard",
        "GIT_AUTHOR_EMAIL": "shipyard@localhost",
        "GIT_COMMITTER_NAME": "Shipyard",
        "GIT_COMMITTER_EMAIL": "shipyard@localhost",
    }
    if remote:
        env.update({k: os.environ[k] for k in _REMOTE_PASSTHROUGH if k in os.environ})
    else:
        env["GIT_CONFIG_GLOBAL"] = os.devnull
        env["HOME"] = os.devnull
    return env


def git(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    ok: Collection[int] = (0,),
    what: str = "",
    timeout: float = GIT_TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS`` in ``cwd``; an exit status outside ``ok`` is a ToolError naming
    ``what`` (the repository or working copy) and git's last line of complaint."""
    command = ["git", *_SAFE, *args]
    try:
        done = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            cwd=cwd,
            env=dict(env if env is not None else git_env()),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        if not cwd.is_dir():
            raise ToolError(
                f"{what or cwd}: the folder {cwd} disappeared",
                hint="check that nothing else removes Shipyard's state folder",
            ) from exc
        raise ConfigError(
            "git is not installed (or not on PATH)",
            hint="install git: repositories are read and changed with it",
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolError(
            f"{what or cwd}: git {' '.join(args)[:80]} took longer than {timeout:g} s",
            hint="check that the repository is not locked, on a hung disk or behind a slow network",
        ) from exc
    if done.returncode not in ok:
        raise git_failed(args, done, what or str(cwd))
    return done


def git_failed(
    args: Sequence[str], done: subprocess.CompletedProcess[bytes], what: str
) -> ToolError:
    """The error for a git command that failed."""
    stderr = done.stderr.decode(errors="replace").strip()
    last = stderr.splitlines()[-1] if stderr else f"exit status {done.returncode}"
    command = next((a for a in args if not a.startswith("-")), args[0] if args else "")
    return ToolError(
        f"{what}: git {command} failed: {last}",
        hint="check the repository (git fsck) and that the disk is writable",
        details={"command": ["git", *args], "stderr": stderr[-4000:]},
    )
