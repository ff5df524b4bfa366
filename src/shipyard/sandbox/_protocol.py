"""The sandbox contract: run one command in a workspace under limits, report what happened."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Limits", "Mount", "RunResult", "SandboxBackend", "run_environment"]


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Per-run limits. Hitting one kills the run's whole process tree."""

    timeout_seconds: float = 60.0
    """Wall-clock limit."""
    cpu_seconds: int = 60
    """CPU time limit per process (RLIMIT_CPU)."""
    memory_mb: int = 2048
    """Address-space limit per process (RLIMIT_AS)."""
    max_processes: int = 256
    """Processes the run may have (RLIMIT_NPROC; needs a user namespace to bind as root)."""
    max_file_mb: int = 64
    """Largest file the run may write (RLIMIT_FSIZE)."""
    max_open_files: int = 256
    """Open file descriptors (RLIMIT_NOFILE)."""
    max_output_bytes: int = 1_000_000
    """Captured stdout + stderr; more ends the run."""


@dataclass(frozen=True, kw_only=True)
class Mount:
    """A host file or folder that one run sees besides its workspace."""

    source: Path
    """The path on this machine."""
    target: str = ""
    """Where the run sees it ('' : at ``source``'s own path). An unconfined backend sees
    everything at its own path and ignores this; callers that need one path for both use
    ``source`` (or ask ``backend.isolated``)."""
    writable: bool = False
    """Read-only unless this is true."""


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """What one sandboxed command did."""

    exit_code: int
    """The process's exit status; negative for a signal."""
    stdout: str
    """Captured standard output (capped)."""
    stderr: str
    """Captured standard error (capped)."""
    timed_out: bool
    """True when the wall-clock limit ended the run."""
    killed_by: str | None
    """The limit that ended the run (``timeout``, ``cpu``, ``output``, ``file_size``), if any."""
    duration_ms: float
    """Wall-clock time of the run."""
    backend: str
    """The backend that ran it."""
    egress_log: tuple[str, ...] = ()
    """The egress proxy's decisions, in order (``allowed host:port`` / ``denied host:port``);
    empty for a run without egress."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SandboxBackend(Protocol):
    """An isolation backend. ``isolated`` is False for backends that only limit, not confine."""

    name: str
    isolated: bool

    def workspace(self) -> AbstractContextManager[Path]:
        """A fresh, empty folder for one run's files, removed afterwards."""
        ...

    def run(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        limits: Limits,
        env: Mapping[str, str] | None = None,
        mounts: Sequence[Mount] = (),
        egress: Sequence[str] | None = None,
        in_place: bool = False,
    ) -> RunResult:
        """Run ``argv`` in ``workdir``; the command failing is a result, not an exception.

        ``mounts``: more files and folders the run sees (read-only unless writable).
        ``egress``: None, no network at all; otherwise ``host:port`` entries the run may
        reach, and nothing else, through Shipyard's egress proxy (``HTTP(S)_PROXY`` are set
        for it). ``in_place``: the run works in ``workdir`` itself (its changes stay there)
        rather than in a copy; an isolated backend shows it at :data:`WORK`."""
        ...

    def warm(self) -> None:
        """Start whatever the backend keeps warm now, rather than on the first run."""
        ...

    def close(self) -> None:
        """Release what the backend holds (warm processes, spool folders)."""
        ...


def run_environment(*, home: str, tmpdir: str) -> dict[str, str]:
    """The only environment a run gets: nothing of the parent's (no keys, no tokens)."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": tmpdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONNOUSERSITE": "1",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # checks need no third-party pytest plugins
    }
