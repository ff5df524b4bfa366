"""The ``process`` backend: a plain child process with rlimits and a scrubbed environment.

It limits but does not confine: the child can read whatever the Shipyard user can read (so
a run's ``mounts`` are simply there, at their own paths), can reach the network directly (a
run with ``egress`` gets the proxy variables, which well-behaved clients follow, but nothing
enforces them), and a child that starts its own session escapes the process-group kill.
``max_processes`` is not applied here (RLIMIT_NPROC counts every process of the user, so it
needs the user namespace the bubblewrap backend provides). It is the declared, weaker
fallback for machines without bubblewrap, and every check report made with it says so.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO

from shipyard.errors import SandboxError
from shipyard.sandbox._egress import EgressProxy, proxy_environment
from shipyard.sandbox._protocol import Limits, Mount, RunResult, run_environment

__all__ = ["ProcessBackend"]

_SIGNAL_LIMITS = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "file_size"}


def _limiter(limits: Limits) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec
        cpu = limits.cpu_seconds
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        memory = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        size = limits.max_file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        files = limits.max_open_files
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


class _CappedReader(threading.Thread):
    """Drains one pipe; past the shared cap it keeps draining but stops keeping."""

    def __init__(self, stream: IO[bytes], budget: list[int], on_overflow: Callable[[], None]):
        super().__init__(daemon=True)
        self.stream, self.budget, self.on_overflow = stream, budget, on_overflow
        self.chunks: list[bytes] = []

    def run(self) -> None:
        while chunk := self.stream.read1(65536):  # type: ignore[attr-defined]
            if self.budget[0] <= 0:
                continue
            keep = chunk[: self.budget[0]]
            self.chunks.append(keep)
            self.budget[0] -= len(keep)
            if self.budget[0] <= 0:
                self.on_overflow()

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")


class _ProcessGroup:
    """A child started in its own session, killed as a whole; remembers the first reason."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.killed_by: str | None = None
        """The first reason the group was killed for (``timeout``, ``output``...)."""

    def kill(self, reason: str | None = None) -> None:
        """SIGKILL the whole group; ``reason`` is kept unless an earlier one was."""
        if reason is not None and self.killed_by is None:
            self.killed_by = reason
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)


def _spawn(
    argv: Sequence[str], *, workdir: Path, env: Mapping[str, str], limits: Limits
) -> subprocess.Popen[bytes]:
    """Start the child in a session of its own, with the limits applied before exec."""
    try:
        return subprocess.Popen(
            list(argv),
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_limiter(limits),
        )
    except OSError as exc:
        raise SandboxError(
            f"could not start {argv[0]!r}: {exc}", hint="check that the command exists"
        ) from exc


class ProcessBackend:
    name = "process"
    isolated = False

    def warm(self) -> None:
        """Nothing to warm: every run is its own process."""

    def close(self) -> None:
        """Nothing to release: every run is its own process."""

    @contextmanager
    def workspace(self) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="shipyard-ws-") as folder:
            yield Path(folder)

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
        """Run ``argv`` in ``workdir`` itself (``in_place`` or not: this backend never copies).

        ``mounts`` are ignored: every file is visible here at its own path. ``egress`` starts
        the egress proxy and points ``HTTP(S)_PROXY`` at it, so allowed hosts are reached
        the same way as under bubblewrap; but nothing stops a program that ignores those
        variables from connecting anywhere.
        """
        home = str(workdir)
        environment = run_environment(home=home, tmpdir=home) | dict(env or {})
        if egress is None:
            return self._run(argv, workdir, environment, limits)
        with EgressProxy(egress) as proxy:
            environment |= proxy_environment(proxy.url)
            result = self._run(argv, workdir, environment, limits)
        return replace(result, egress_log=proxy.log)

    def _run(
        self, argv: Sequence[str], workdir: Path, environment: Mapping[str, str], limits: Limits
    ) -> RunResult:
        started = time.perf_counter()
        child = _spawn(argv, workdir=workdir, env=environment, limits=limits)
        group = _ProcessGroup(child.pid)
        budget = [limits.max_output_bytes]
        if child.stdout is None or child.stderr is None:
            raise SandboxError("the sandboxed process has no output pipes")
        stdout = _CappedReader(child.stdout, budget, lambda: group.kill("output"))
        stderr = _CappedReader(child.stderr, budget, lambda: group.kill("output"))
        for reader in (stdout, stderr):
            reader.start()
        try:
            code = child.wait(timeout=limits.timeout_seconds)
        except subprocess.TimeoutExpired:
            group.kill("timeout")
            code = child.wait()
        group.kill()  # children the run left behind share its process group: end them too
        for reader in (stdout, stderr):
            reader.join(timeout=5)
        killed_by = group.killed_by
        if killed_by is None and code < 0 and -code in _SIGNAL_LIMITS:
            killed_by = _SIGNAL_LIMITS[signal.Signals(-code)]
        return RunResult(
            exit_code=code,
            stdout=stdout.text(),
            stderr=stderr.text(),
            timed_out=killed_by == "timeout",
            killed_by=killed_by,
            duration_ms=(time.perf_counter() - started) * 1000,
            backend=self.name,
        )
