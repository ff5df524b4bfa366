"""The ``bwrap`` backend: bubblewrap isolation with a warm pool of zygotes.

Each pool slot is one bubblewrap sandbox (new user, pid, network, ipc and uts namespaces; no
network at all; the system and the Python runtime mounted read-only; nothing of the host's
home folders, credentials, Shipyard database or artifact store) running
:mod:`shipyard.sandbox._zygote`, which has imported the test tooling once and forks a child
in fresh namespaces for every run. Starting bubblewrap and the interpreter is paid once per
slot, not per run; isolation is paid per run, and costs a few milliseconds.

Workspaces live in a spool folder that only the sandboxes see; a run sees its own workspace
at ``/sandbox/work`` and nothing of the others.

A run with ``mounts``, ``egress`` or ``in_place`` needs a view of the filesystem (or a way out)
that a slot, whose mounts are fixed when it starts, cannot give: it gets a bubblewrap sandbox
of its own instead (:mod:`shipyard.sandbox._fresh`), with the same isolation and limits.
So does every run of a backend made ``one_shot``: a process that runs one command and exits
(``shipyard sandbox exec``) would pay far more to start a slot, and import the preloaded
tooling into it, than a sandbox of its own costs (20–40 ms). Several runs that use that
tooling (``shipyard check``) still gain from one slot that imports it once.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, replace
from functools import cache
from pathlib import Path
from typing import IO, Any

from shipyard.errors import SandboxError
from shipyard.sandbox._cgroup import PidsCgroup
from shipyard.sandbox._egress import parse_egress
from shipyard.sandbox._fresh import FreshRun
from shipyard.sandbox._layout import (
    runtime_mounts,
    runtime_paths,
    system_mounts,
    user_process_count,
)
from shipyard.sandbox._protocol import Limits, Mount, RunResult, run_environment
from shipyard.sandbox._zygote import SPOOL, WORK

__all__ = ["DEFAULT_PRELOAD", "BwrapBackend", "bwrap_available", "confine"]

DEFAULT_PRELOAD = (
    "pytest",
    "html5lib",
    "jsonschema",
    "bandit.core.manager",
    "detect_secrets.core.scan",
    "shipyard.checks",  # the probes' package; not the probe module, which runpy runs afresh
)
"""Modules each zygote imports once, so runs that use them start warm."""

_PIDS_EVENTS = "/run/shipyard/pids.events"
_log = logging.getLogger("shipyard.sandbox")


def bwrap_command(spool: Path, cgroup: PidsCgroup | None) -> list[str]:
    """The bubblewrap command line of one pool slot."""
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
    if os.getuid() == 0:  # lets the zygote give each run namespaces of its own; runs drop it
        args += ["--cap-add", "CAP_SYS_ADMIN"]
    args += ["--hostname", "sandbox", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin"]
    args += system_mounts() + runtime_mounts()
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", WORK]
    args += ["--bind", str(spool), SPOOL]
    if cgroup is not None:
        args += ["--ro-bind", str(cgroup.events_file), _PIDS_EVENTS]
    return args


def confine(
    command: Sequence[str], *, read_only: Sequence[Path] = (), writable: Sequence[Path] = ()
) -> list[str]:
    """``command`` under bubblewrap for a long-lived process (a served handler): no network,
    new namespaces, the system and the Python runtime read-only, and only these folders."""
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    args += ["--setenv", "PATH", "/usr/bin:/bin", "--setenv", "PYTHONDONTWRITEBYTECODE", "1"]
    args += system_mounts()
    for path in runtime_paths():
        args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for folder in read_only:
        args += ["--ro-bind", str(folder), str(folder)]
    for folder in writable:
        args += ["--bind", str(folder), str(folder)]
    return [*args, "--", *command]


@cache
def bwrap_available() -> bool:
    """True when bubblewrap is installed and can create its namespaces on this machine."""
    if shutil.which("bwrap") is None:
        return False
    probe = ["bwrap", "--unshare-all", "--die-with-parent", *system_mounts(), "--", "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class _Zygote:
    """One pool slot: a bubblewrap sandbox running the zygote, one run at a time."""

    def __init__(self, spool: Path, preload: Sequence[str]) -> None:
        self.cgroup = PidsCgroup.create(f"shipyard-{os.getpid()}-{secrets.token_hex(3)}")
        command = bwrap_command(spool, self.cgroup)
        mode = [] if os.getuid() == 0 else ["--nested-userns"]
        command += ["--", sys.executable, "-I", "-m", "shipyard.sandbox._zygote", *mode, *preload]
        cgroup = self.cgroup
        # The zygote's own complaints (not the runs'), kept for the error that reports its end.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the zygote
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            start_new_session=True,
            preexec_fn=cgroup.join if cgroup is not None else None,
        )
        self._next_id = 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(
        self, workspace: str, argv: Sequence[str], env: Mapping[str, str], limits: Limits
    ) -> dict[str, Any]:
        if self.cgroup is not None:
            self.cgroup.set_max(limits.max_processes + 3)  # + zygote, supervisor, run's pid 1
        self._next_id += 1
        request = {
            "id": self._next_id,
            "dir": workspace,
            "argv": list(argv),
            "env": dict(env),
            "limits": asdict(limits),
            "pids_events": _PIDS_EVENTS if self.cgroup is not None else None,
            "nproc": (
                user_process_count(os.getuid()) + limits.max_processes
                if self.cgroup is None and os.getuid() != 0
                else None
            ),
        }
        stdin, stdout = self.proc.stdin, self.proc.stdout
        if stdin is None or stdout is None:
            raise SandboxError("the sandbox zygote has no pipes")
        try:
            stdin.write(json.dumps(request).encode() + b"\n")
            stdin.flush()
        except BrokenPipeError as exc:
            raise SandboxError("the sandbox zygote is gone") from exc
        line = _read_line(stdout, limits.timeout_seconds + 15)
        if not line:
            tail = self.log_tail()
            self.close()
            raise _ZygoteLost(f"the sandbox zygote did not answer{tail}")
        return dict(json.loads(line))

    def log_tail(self) -> str:
        self.log.seek(0)
        lines = self.log.read().decode("utf-8", "replace").strip().splitlines()[-5:]
        return (": " + " | ".join(lines)) if lines else ""

    def close(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 9)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.log.close()
        if self.cgroup is not None:
            self.cgroup.remove()


class _ZygoteLost(SandboxError):
    """A pool slot died or hung; the run is tried once more on a fresh slot."""


def _read_line(stream: IO[bytes], timeout: float) -> bytes:
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else b""


class BwrapBackend:
    name = "bwrap"
    isolated = True

    def __init__(
        self,
        *,
        pool_size: int | None = None,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        one_shot: bool = False,
    ):
        """``one_shot``: no warm pool; every run gets a bubblewrap sandbox of its own, built
        for it and gone after it (for a process that runs once or twice, then exits)."""
        if not bwrap_available():
            raise SandboxError(
                "bubblewrap is not available (not installed, or namespaces are not allowed)",
                hint="install it with `apt-get install bubblewrap`, or set sandbox.backend = "
                "'process' (weaker: not isolated)",
            )
        self.pool_size = pool_size or os.cpu_count() or 1
        self.preload = tuple(preload)
        self.one_shot = one_shot
        self.spool = Path(tempfile.mkdtemp(prefix="shipyard-sandbox-"))
        self._idle: list[_Zygote] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.pool_size)

    @contextmanager
    def workspace(self) -> Iterator[Path]:
        """A fresh, empty workspace that a run of this backend sees as /sandbox/work."""
        folder = self.spool / f"ws-{secrets.token_hex(8)}"
        folder.mkdir(mode=0o700)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def warm(self) -> None:
        """Start every pool slot now rather than on first use (a one-shot backend has none)."""
        if self.one_shot:
            return
        with self._lock:
            while len(self._idle) < self.pool_size:
                self._idle.append(_Zygote(self.spool, self.preload))

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
        if self.one_shot or mounts or egress is not None or in_place:
            return self._run_fresh(argv, workdir, limits, env, mounts, egress, in_place)
        if workdir.resolve().parent != self.spool.resolve():
            with self.workspace() as folder:  # the caller's folder is copied, never written
                shutil.copytree(workdir, folder, dirs_exist_ok=True, symlinks=True)
                return self.run(argv, workdir=folder, limits=limits, env=env)
        environment = run_environment(home=WORK, tmpdir="/tmp") | dict(env or {})
        started = time.perf_counter()
        with self._slots:
            try:
                reply = self._run_on_slot(workdir.name, argv, environment, limits)
            except _ZygoteLost as lost:
                _log.warning("%s; running it again on a fresh sandbox slot", lost.message)
                reply = self._run_on_slot(workdir.name, argv, environment, limits)
        if "error" in reply:
            raise SandboxError(f"the sandbox could not run {argv[0]!r}: {reply['error']}")
        killed_by = reply["killed_by"]
        return RunResult(
            exit_code=int(reply["exit_code"]),
            stdout=reply["stdout"],
            stderr=reply["stderr"],
            timed_out=killed_by == "timeout",
            killed_by=killed_by or _signal_limit(int(reply["exit_code"])),
            duration_ms=(time.perf_counter() - started) * 1000,
            backend=self.name,
        )

    def _run_fresh(
        self,
        argv: Sequence[str],
        workdir: Path,
        limits: Limits,
        env: Mapping[str, str] | None,
        mounts: Sequence[Mount],
        egress: Sequence[str] | None,
        in_place: bool,
    ) -> RunResult:
        """A run that a pool slot cannot give what it needs: a sandbox of its own."""
        if egress is not None:
            egress = parse_egress(egress)  # a bad entry is the caller's mistake, said first
        fresh = FreshRun(
            argv=argv,
            workspace=workdir,
            limits=limits,
            env=dict(env or {}),
            mounts=mounts,
            egress=egress,
        )
        if in_place or workdir.resolve().parent == self.spool.resolve():
            return fresh.run()
        with self.workspace() as folder:  # the caller's folder is copied, never written
            shutil.copytree(workdir, folder, dirs_exist_ok=True, symlinks=True)
            return replace(fresh, workspace=folder).run()

    def _run_on_slot(
        self, workspace: str, argv: Sequence[str], env: Mapping[str, str], limits: Limits
    ) -> dict[str, Any]:
        zygote = self._take()
        try:
            return zygote.run(workspace, argv, env, limits)
        finally:
            self._give(zygote)

    def _take(self) -> _Zygote:
        with self._lock:
            while self._idle:
                zygote = self._idle.pop()
                if zygote.alive():
                    return zygote
                zygote.close()
        return _Zygote(self.spool, self.preload)

    def _give(self, zygote: _Zygote) -> None:
        if zygote.alive():
            with self._lock:
                self._idle.append(zygote)
        else:
            zygote.close()

    def close(self) -> None:
        with self._lock:
            for zygote in self._idle:
                zygote.close()
            self._idle.clear()
        shutil.rmtree(self.spool, ignore_errors=True)


def _signal_limit(exit_code: int) -> str | None:
    return {-24: "cpu", -25: "file_size"}.get(exit_code)
