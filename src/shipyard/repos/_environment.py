"""Environments: what a repository's ``setup`` builds, built once and cached.

An environment is a virtual environment. Shipyard creates it (``python -m venv``, with pip),
puts its ``bin`` first on ``PATH``, sets ``VIRTUAL_ENV`` and ``UV_PROJECT_ENVIRONMENT`` to it
and the package index (``PIP_INDEX_URL``, ``UV_DEFAULT_INDEX``) to the repository's, and runs
each ``setup`` command in a copy of the repository's files, in the sandbox: so
``["pip", "install", "-e", ".[test]"]`` and ``["uv", "sync"]`` both fill it. A leading
``python``/``python3`` in a command is the environment's interpreter.

It is cached in ``STATE/envs/<digest>/`` by the sha256 of the repository's dependency files
(:data:`DEPENDENCY_FILES`, plus ``requirements*.txt`` and ``requirements/*.txt``), the setup
commands, the package index and the interpreter's version: a change that edits
``pyproject.toml`` gets an environment of its own, any other change reuses it. A build holds
a file lock (two workers never build the same one), runs in a sandbox workspace, and only a
successful one is copied beside the cache and renamed into place: a failed or killed build
leaves nothing that could be taken for an environment.

The folder is relocatable: its console scripts find their interpreter next to themselves
(the ``#!/bin/sh`` trampoline uv's relocatable environments use), so it works wherever it is
mounted; :meth:`Environment.variables` gives a run the variables for the place it sees it at.
A repository without ``setup`` uses Shipyard's own interpreter, which has pytest.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from shipyard.config import RepoSettings
from shipyard.model import Finding
from shipyard.repos._index import resolve_index_url
from shipyard.repos._source import locked
from shipyard.repos._workcopy import WorkingCopy, working_files
from shipyard.sandbox import (
    WORK,
    BwrapBackend,
    Limits,
    Mount,
    SandboxBackend,
    run_environment,
)

__all__ = [
    "DEPENDENCY_FILES",
    "ENV_MOUNT",
    "Environment",
    "EnvironmentBuild",
    "dependency_files",
    "environment_digest",
    "prepare_environment",
]

DEPENDENCY_FILES = (
    "pyproject.toml",
    "setup.cfg",
    "setup.py",
    "uv.lock",
    "poetry.lock",
    "Pipfile.lock",
)
"""Files at the repository's top whose content decides its environment (with
``requirements*.txt`` there and ``requirements/*.txt``)."""

ENV_MOUNT = "/sandbox/env"
"""Where an isolated sandbox run is meant to see the environment (mounted read-only)."""

_VENV = ".shipyard-env"
_META = "shipyard-env.json"
_LOG_CHARS = 20_000
_TRAMPOLINE = (
    '#!/bin/sh\n\'\'\'exec\' "$(dirname -- "$(realpath -- "$0")")"/{python} "$0" "$@"\n\' \'\'\'\n'
)


@dataclass(frozen=True, kw_only=True)
class Environment:
    """A built environment, or Shipyard's own interpreter (``path`` None)."""

    digest: str = ""
    """Its cache key ('' for Shipyard's own interpreter)."""
    path: Path | None = None
    """The folder on this machine (a virtual environment); None: Shipyard's interpreter."""
    files: tuple[str, ...] = ()
    """The dependency files its digest covers."""

    @property
    def own(self) -> bool:
        """True when tests run with Shipyard's own interpreter (no ``setup``)."""
        return self.path is None

    def variables(
        self, *, at: str | None = None, python_path: Sequence[str] = ()
    ) -> dict[str, str]:
        """``VIRTUAL_ENV`` and ``PATH`` for a run that sees the environment at ``at``
        (default: its own path, as the unisolated backend sees it; :data:`ENV_MOUNT` for a
        read-only mount in an isolated run); none for Shipyard's own interpreter, which the
        sandbox's ``PATH`` already has first. ``python_path``: folders, as the run sees them,
        put first on ``PYTHONPATH`` — the working copy's source roots
        (:func:`~shipyard.repos.source_roots`), so its own code is imported from the copy
        even where an editable install points at the folder setup ran in."""
        found = {"PYTHONPATH": ":".join(python_path)} if python_path else {}
        if self.path is None:
            return found
        where = at or str(self.path)
        default = run_environment(home="/", tmpdir="/tmp")["PATH"]
        return {"VIRTUAL_ENV": where, "PATH": f"{where}/bin:{default}", **found}

    def python(self, *, at: str | None = None) -> str:
        """The interpreter's path as the run sees it (``python`` for Shipyard's own)."""
        return "python" if self.path is None else f"{at or self.path}/bin/python"

    def command(self, argv: Sequence[str], *, at: str | None = None) -> list[str]:
        """``argv`` with a leading ``python``/``python3`` made the environment's interpreter
        (the sandbox runs a bare ``python`` as Shipyard's own)."""
        argv = list(argv)
        if argv and argv[0] in ("python", "python3"):
            argv[0] = self.python(at=at)
        return argv

    def site_packages(self) -> list[Path]:
        """Its ``site-packages`` folders (none for Shipyard's own interpreter)."""
        if self.path is None:
            return []
        return sorted(self.path.glob("lib/python*/site-packages"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "path": str(self.path) if self.path else None,
            "files": list(self.files),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Environment:
        path = data.get("path")
        return cls(
            digest=str(data.get("digest", "")),
            path=Path(path) if path else None,
            files=tuple(data.get("files", ())),
        )


@dataclass(frozen=True, kw_only=True)
class EnvironmentBuild:
    """What :func:`prepare_environment` did."""

    environment: Environment | None
    """The environment; None when setup failed (the findings say why)."""
    built: bool = False
    """True when this call ran setup; False when it reused the cache (or there is no setup)."""
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    """Why setup failed (rule ``repo.setup-failed``)."""
    log: str = ""
    """What the setup commands printed (the end of it), when this call ran them."""
    duration_ms: float = 0.0
    """Time spent, waiting for another builder included."""

    @property
    def ok(self) -> bool:
        return self.environment is not None


def dependency_files(tree: Path) -> list[str]:
    """The dependency files present in ``tree``, sorted (relative paths)."""
    found = [name for name in DEPENDENCY_FILES if (tree / name).is_file()]
    found += [p.name for p in tree.glob("requirements*.txt") if p.is_file()]
    found += [f"requirements/{p.name}" for p in (tree / "requirements").glob("*.txt")]
    return sorted(set(found))


def environment_digest(tree: Path, setup: Sequence[Sequence[str]], *, index_url: str) -> str:
    """The cache key of the environment ``setup`` builds for the repository in ``tree``."""
    digest = hashlib.sha256(b"shipyard-env/1\n")
    facts = {
        "python": list(sys.version_info[:3]),
        "implementation": sys.implementation.name,
        "index_url": index_url,
        "setup": [list(argv) for argv in setup],
    }
    digest.update(json.dumps(facts, sort_keys=True).encode() + b"\n")
    for name in dependency_files(tree):
        content = hashlib.sha256((tree / name).read_bytes()).hexdigest()
        digest.update(f"{name}\0{content}\n".encode())
    return digest.hexdigest()


def prepare_environment(
    copy: WorkingCopy,
    settings: RepoSettings,
    *,
    envs_dir: Path,
    backend: SandboxBackend,
    limits: Limits,
) -> EnvironmentBuild:
    """The environment for the working copy's dependency files: from the cache, or built now
    by ``settings.setup`` in ``backend`` under ``limits`` (each command's). Without setup:
    Shipyard's own interpreter. A setup that fails is a finding, and caches nothing."""
    started = time.perf_counter()
    setup = [list(argv) for argv in settings.setup]
    if not setup:
        return EnvironmentBuild(environment=Environment())
    index_url = resolve_index_url(settings.index_url)
    digest = environment_digest(copy.path, setup, index_url=index_url)
    files = tuple(dependency_files(copy.path))
    final = envs_dir / digest

    def done(**kwargs: Any) -> EnvironmentBuild:
        elapsed = (time.perf_counter() - started) * 1000
        return EnvironmentBuild(duration_ms=elapsed, **kwargs)

    if (final / _META).is_file():
        return done(environment=Environment(digest=digest, path=final, files=files))
    with locked(envs_dir / f"{digest}.lock"):
        if (final / _META).is_file():  # another worker built it while this one waited
            return done(environment=Environment(digest=digest, path=final, files=files))
        for stale in envs_dir.glob(f".build-{digest}-*"):
            shutil.rmtree(stale, ignore_errors=True)  # a killed build's leftovers
        with backend.workspace() as workspace:
            _copy_files(copy, workspace)
            seen = WORK if isinstance(backend, BwrapBackend) else str(workspace)
            log, failure = _run_setup(
                backend, workspace, setup, f"{seen}/{_VENV}", index_url, limits
            )
            if failure is not None:
                return done(environment=None, findings=(failure,), log=log)
            temp = envs_dir / f".build-{digest}-{secrets.token_hex(4)}"
            try:
                shutil.copytree(workspace / _VENV, temp, symlinks=True)
                _relocate(temp, f"{seen}/{_VENV}")
                meta = {
                    "digest": digest,
                    "setup": setup,
                    "files": list(files),
                    "index_url": index_url,
                    "python": sys.version.split()[0],
                    "built_at": time.time(),
                    "built_as": f"{seen}/{_VENV}",
                }
                (temp / _META).write_text(json.dumps(meta, indent=2) + "\n")
                temp.rename(final)
            finally:
                shutil.rmtree(temp, ignore_errors=True)
    environment = Environment(digest=digest, path=final, files=files)
    return done(environment=environment, built=True, log=log)


def _copy_files(copy: WorkingCopy, workspace: Path) -> None:
    """The working copy's files (not .git, not ignored ones) into the build's workspace."""
    for path in working_files(copy):
        target = workspace / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(copy.path / path, target, follow_symlinks=False)


def _run_setup(
    backend: SandboxBackend,
    workspace: Path,
    setup: list[list[str]],
    venv: str,
    index_url: str,
    limits: Limits,
) -> tuple[str, Finding | None]:
    """Create the virtual environment, then run each setup command in it; the log and the
    first failure."""
    env = {
        "VIRTUAL_ENV": venv,
        "PATH": f"{venv}/bin:{run_environment(home='/', tmpdir='/tmp')['PATH']}",
        "UV_PROJECT_ENVIRONMENT": venv,
        "UV_PYTHON_DOWNLOADS": "never",
        "PIP_INDEX_URL": index_url,
        "UV_DEFAULT_INDEX": index_url,
        "UV_INDEX_URL": index_url,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    }
    log: list[str] = []
    steps = [[sys.executable, "-m", "venv", _VENV], *setup]
    egress, mounts = index_access(index_url)
    for number, argv in enumerate(steps):
        command = [f"{venv}/bin/python", *argv[1:]] if argv[0] in ("python", "python3") else argv
        result = backend.run(
            command,
            workdir=workspace,
            limits=limits,
            env=env if number else {},
            egress=egress if number else None,
            mounts=mounts if number else (),
        )
        shown = " ".join(argv)
        log.append(f"$ {shown}\n{result.stdout}{result.stderr}")
        if result.exit_code != 0 or result.killed_by:
            if result.killed_by == "timeout":
                why = f"took longer than {limits.timeout_seconds:g} s"
            elif result.killed_by:
                why = f"was stopped by the sandbox's {result.killed_by} limit"
            else:
                why = f"exited with status {result.exit_code}"
            tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
            message = f"setup command `{shown}` {why}"
            if tail:
                message += ":\n" + "\n".join(tail)
            text = "".join(log)[-_LOG_CHARS:]
            return text, Finding(rule="repo.setup-failed", message=message)
    return "".join(log)[-_LOG_CHARS:], None


def index_access(index_url: str) -> tuple[tuple[str, ...] | None, tuple[Mount, ...]]:
    """What a setup command may reach: the package index and nothing else. An http(s)
    index is its ``host:port`` through the egress proxy (PyPI's files live on a host of
    their own, allowed with it); a ``file://`` index is its folder, mounted read-only."""
    parts = urlsplit(index_url)
    if parts.scheme == "file":
        folder = Path(unquote(parts.path))
        # A simple index's pages often link to files beside it (pip's `../files/`): its
        # parent folder is mounted, so those links resolve inside the sandbox too.
        shown = folder.parent if folder.parent != Path("/") else folder
        return None, ((Mount(source=shown),) if folder.exists() else ())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None, ()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    hosts = [f"{parts.hostname}:{port}"]
    if parts.hostname == "pypi.org":
        hosts.append("files.pythonhosted.org:443")
    return tuple(hosts), ()


def _relocate(folder: Path, built_as: str) -> None:
    """Make the console scripts find their interpreter beside themselves, wherever the
    folder ends up (their ``#!`` named the place it was built at)."""
    prefix = f"#!{built_as}/bin/".encode()
    for script in (folder / "bin").iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        with script.open("rb") as handle:
            first = handle.readline(4096)
            if not first.startswith(prefix):
                continue
            rest = handle.read()
        python = first[len(prefix) :].strip().decode(errors="replace")
        if not python.startswith("python") or any(c in python for c in " \"'$`\\"):
            continue
        script.write_bytes(_TRAMPOLINE.format(python=python).encode() + rest)
