"""One-off bubblewrap runs: for runs with their own mounts, egress or an in-place workdir.

A warm pool slot's mounts are fixed when it starts, so a run that needs more (a cached
environment read-only, a working copy written in place, a way out through the egress proxy)
gets a bubblewrap sandbox of its own, built for it and gone after it, with the same isolation
as a pool slot: new user, pid, network, ipc and uts namespaces, a scrubbed environment, the
system and the runtime read-only, its own ``/proc``, ``/dev`` and ``/tmp``, the same limits
(rlimits on the command, a pids cgroup as root), the wall clock and the output cap, which end
the whole sandbox. Inside, :mod:`shipyard.sandbox._relay` starts the command and, for egress,
relays ``127.0.0.1:3128`` to the proxy's Unix socket. It costs a bubblewrap and a bare
interpreter start (about 20 ms) that the pool avoids.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from shipyard.errors import SandboxError
from shipyard.sandbox._cgroup import PidsCgroup
from shipyard.sandbox._egress import EgressProxy, proxy_environment
from shipyard.sandbox._layout import mount_args, runtime_mounts, system_mounts, user_process_count
from shipyard.sandbox._protocol import Limits, Mount, RunResult, run_environment
from shipyard.sandbox._zygote import WORK, _collect

__all__ = ["PROXY_PORT", "PROXY_SOCKET", "FreshRun"]

PROXY_SOCKET = "/run/shipyard/egress.sock"
"""Where a run's egress proxy socket is inside the sandbox."""
PROXY_PORT = 3128
"""The loopback port inside the sandbox that the relay forwards to the proxy."""
_RELAY = Path(__file__).with_name("_relay.py")
"""Run by path inside the sandbox: see :mod:`shipyard.sandbox._relay`."""
_TMP_BYTES = 256 * 1024 * 1024
_SANDBOX_PROCESSES = 3
"""Processes besides the run's own: bubblewrap outside and inside, and the relay."""


@dataclass(frozen=True, kw_only=True)
class FreshRun:
    """What one one-off run is given."""

    argv: Sequence[str]
    """The command."""
    workspace: Path
    """The folder shown read-write at :data:`WORK` (the run's cwd and HOME)."""
    limits: Limits
    """The run's limits."""
    env: Mapping[str, str]
    """Variables on top of :func:`run_environment`."""
    mounts: Sequence[Mount] = ()
    """More files and folders the run sees."""
    egress: Sequence[str] | None = None
    """``host:port`` entries reachable through the proxy; None: no network at all."""

    def run(self) -> RunResult:
        """Run it: the command failing is a result; the sandbox failing is a SandboxError."""
        if not self.argv:
            raise SandboxError("nothing to run: the command is empty")
        if not self.workspace.is_dir():
            raise SandboxError(
                f"cannot run in {self.workspace}: it is not a folder",
                hint="pass the folder the command should work in",
            )
        with contextlib.ExitStack() as stack:
            proxy: EgressProxy | None = None
            environment = run_environment(home=WORK, tmpdir="/tmp") | dict(self.env)
            if self.egress is not None:
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sy-eg-")))
                proxy = stack.enter_context(EgressProxy(self.egress, unix_path=folder / "sock"))
                environment |= proxy_environment(f"http://127.0.0.1:{PROXY_PORT}")
            command = self._command(environment, proxy)
            cgroup = PidsCgroup.create(f"shipyard-{os.getpid()}-{secrets.token_hex(3)}")
            if cgroup is not None:
                stack.callback(_remove, cgroup)
                cgroup.set_max(self.limits.max_processes + _SANDBOX_PROCESSES)
            result = _supervise(command, self, cgroup)
            if proxy is not None:
                proxy.close()
                result = replace(result, egress_log=proxy.log)
            return result

    def _command(self, environment: Mapping[str, str], proxy: EgressProxy | None) -> list[str]:
        args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
        args += ["--hostname", "sandbox", "--clearenv"]
        for name, value in environment.items():
            args += ["--setenv", name, value]
        args += system_mounts() + runtime_mounts()
        args += ["--proc", "/proc", "--dev", "/dev", "--size", str(_TMP_BYTES), "--tmpfs", "/tmp"]
        args += ["--bind", str(self.workspace), WORK, "--chdir", WORK]
        keep = [WORK] + ([PROXY_SOCKET] if proxy is not None else [])
        args += mount_args(self.mounts, keep_visible=keep)
        if proxy is not None and proxy.unix_path is not None:
            args += ["--ro-bind", str(proxy.unix_path), PROXY_SOCKET]
        return args


def _spec(run: FreshRun, status_fd: int, cgroup: PidsCgroup | None) -> str:
    nproc = None
    if cgroup is None and os.getuid() != 0:
        nproc = user_process_count(os.getuid()) + run.limits.max_processes
    proxy = {"socket": PROXY_SOCKET, "port": PROXY_PORT} if run.egress is not None else None
    spec = {"status_fd": status_fd, "limits": asdict(run.limits), "nproc": nproc, "proxy": proxy}
    spec["keep_pwd"] = "PWD" in run.env  # bubblewrap sets PWD; a pool run has none
    return marshal.dumps(spec).hex()  # see shipyard.sandbox._relay


def _supervise(command: list[str], run: FreshRun, cgroup: PidsCgroup | None) -> RunResult:
    """Start the sandbox, collect its output under the limits, and say how it ended."""
    started = time.perf_counter()
    (out_r, out_w), (err_r, err_w), (status_r, status_w) = (os.pipe() for _ in range(3))
    relay = [sys.executable, "-I", "-S", str(_RELAY), _spec(run, status_w, cgroup)]
    try:
        proc = subprocess.Popen(
            [*command, "--", *relay, "--", *run.argv],
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            pass_fds=(status_w,),
            start_new_session=True,
            preexec_fn=cgroup.join if cgroup is not None else None,
        )
    except OSError as exc:
        for fd in (out_r, err_r, status_r):
            os.close(fd)
        raise SandboxError(
            f"could not start bubblewrap: {exc}", hint="check that bwrap is installed"
        ) from exc
    finally:
        for fd in (out_w, err_w, status_w):
            os.close(fd)
    events = str(cgroup.events_file) if cgroup is not None else None
    try:
        # Ends the sandbox on a limit (its bubblewrap, and with it everything inside) and
        # closes out_r and err_r.
        stdout, stderr, killed_by = _collect(
            proc.pid, out_r, err_r, asdict(run.limits), events, time.monotonic()
        )
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        raise
    finally:
        returncode = proc.wait()
        status = _read_status(status_r)
        os.close(status_r)
    return _result(run, status, returncode, stdout, stderr, killed_by, started)


def _remove(cgroup: PidsCgroup) -> None:
    """Remove the run's cgroup once the kernel has let go of its last processes (killed ones
    leave it a moment after their sandbox has ended); a bounded wait."""
    procs = cgroup.path / "cgroup.procs"
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if not procs.read_text().strip():
                break
        time.sleep(0.005)
    cgroup.remove()


def _read_status(fd: int) -> dict[str, Any]:
    """Everything the relay reported, merged ({} when it never started)."""
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    status: dict[str, Any] = {}
    for line in data.splitlines():
        with contextlib.suppress(ValueError):
            status |= json.loads(line)
    return status


def _result(
    run: FreshRun,
    status: dict[str, Any],
    returncode: int,
    stdout: bytes,
    stderr: bytes,
    killed_by: str | None,
    started: float,
) -> RunResult:
    text = stderr.decode("utf-8", "replace")
    if not status.get("started") and killed_by is None:
        tail = " | ".join(text.strip().splitlines()[-3:]) or f"exit status {returncode}"
        raise SandboxError(
            f"the sandbox could not run {run.argv[0]!r}: {tail}",
            hint="a mount's source or target may be wrong; otherwise try the same command "
            "with `shipyard sandbox exec`",
        )
    if "exit_code" in status:
        exit_code = int(status["exit_code"])
    elif killed_by is not None:
        exit_code = -9
    else:  # the command ended the relay itself; bubblewrap reports signals as 128 + N
        exit_code = 128 - returncode if returncode > 128 else returncode
    if killed_by is None and exit_code < 0:
        if float(status.get("cpu", 0.0)) >= run.limits.cpu_seconds:
            killed_by = "cpu"  # the hard limit's SIGKILL after SIGXCPU was ignored
        else:
            killed_by = {-24: "cpu", -25: "file_size"}.get(exit_code)
    return RunResult(
        exit_code=exit_code,
        stdout=stdout.decode("utf-8", "replace"),
        stderr=text,
        timed_out=killed_by == "timeout",
        killed_by=killed_by,
        duration_ms=(time.perf_counter() - started) * 1000,
        backend="bwrap",
    )
