"""The warm zygote: runs inside bubblewrap and forks one isolated child per run.

Started once per pool slot as ``python -I -m shipyard.sandbox._zygote MODULE...``; it imports
the test tooling (the MODULEs) once, then reads one JSON request per line on stdin and writes
one JSON result per line on stdout. For each run::

    zygote (the supervisor)
      └─ G: cloned into new mount, pid, ipc, uts [and user] namespaces; pid 1 of the run.
            Private mounts: its own workspace at /sandbox/work, the other runs' workspaces
            hidden, its own /proc and /tmp.
            Then no capabilities, rlimits, a scrubbed environment, and the command itself,
            in-process when it is a Python invocation (the warm path).

The zygote reads the run's output (capped), enforces the wall clock and the process limit, and
kills G when a limit is hit: the kernel then kills every process of the run, since G is its
pid 1. One run can neither see another's files nor its processes, and nothing of it
outlives it.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import runpy
import select
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

from shipyard.sandbox import _ns

SPOOL = "/sandbox/spool"
WORK = "/sandbox/work"
_PYTHON_FLAGS = {"-I", "-S", "-s", "-E", "-B", "-u", "-q", "-O"}


def main() -> int:
    args = sys.argv[1:]
    # As root, bubblewrap gives the zygote CAP_SYS_ADMIN and each run gets new namespaces
    # directly; otherwise each run starts in a user namespace of its own (which a
    # root-started sandbox cannot nest while still mounting /proc).
    nested = bool(args) and args[0] == "--nested-userns"
    for name in args[int(nested) :]:
        with contextlib.suppress(ImportError):  # the check that needs it reports it
            importlib.import_module(name)
    if "pytest" in sys.modules:
        _warm_pytest()
    gc.freeze()  # forked runs never scan (and so never copy) the zygote's own objects
    _ns.set_dumpable(False)
    uid, gid = os.getuid(), os.getgid()
    for line in sys.stdin.buffer:
        request = json.loads(line)
        result = _one_run(request, uid, gid, nested)
        sys.stdout.buffer.write(json.dumps({"id": request["id"], **result}).encode() + b"\n")
        sys.stdout.buffer.flush()
    return 0


def _warm_pytest() -> None:
    """One empty pytest session, so its plugins and lazy imports are loaded before any fork."""
    import pytest

    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    empty = tempfile.mkdtemp()
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        pytest.main(["-q", "-p", "no:cacheprovider", f"--junitxml={empty}/report.xml", empty])
    shutil.rmtree(empty, ignore_errors=True)


def _one_run(request: dict[str, Any], uid: int, gid: int, nested: bool) -> dict[str, Any]:
    """Clone the run into fresh namespaces, supervise it, and say how it ended.

    Anything that goes wrong becomes an ``error`` answer, never a dead zygote.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    flags = _ns.CLONE_NEWNS | _ns.CLONE_NEWPID | _ns.CLONE_NEWIPC | _ns.CLONE_NEWUTS
    try:
        run = _ns.clone_fork(flags | (_ns.CLONE_NEWUSER if nested else 0))
    except OSError as exc:
        for fd in (out_r, out_w, err_r, err_w):
            os.close(fd)
        return {"error": f"cannot create the run's namespaces: {exc}"}
    if run == 0:  # the run: it must never return into the zygote's loop
        try:
            os.close(out_r)
            os.close(err_r)
            if nested:
                _ns.map_identity(uid, gid)
            _start(request, out_w, err_w)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.write(err_w, f"sandbox setup failed: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(125)
    os.close(out_w)
    os.close(err_w)
    limits = request["limits"]
    stdout, stderr, killed_by = _collect(
        run, out_r, err_r, limits, request.get("pids_events"), time.monotonic()
    )
    _, status, usage = os.wait4(run, 0)
    exit_code = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    if killed_by is None and exit_code < 0 and cpu >= int(limits["cpu_seconds"]):
        killed_by = "cpu"  # pid 1 ignores SIGXCPU; the hard limit's SIGKILL ended it
    return {
        "exit_code": exit_code,
        "stdout": stdout.decode("utf-8", "replace"),
        "stderr": stderr.decode("utf-8", "replace"),
        "killed_by": killed_by,
    }


def _pids_limit_hits(path: str | None) -> int:
    if not path:
        return 0
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith("max "):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _collect(
    init: int, out_r: int, err_r: int, limits: dict[str, Any], pids_events: str | None, t0: float
) -> tuple[bytes, bytes, str | None]:
    """Read the run's output until it ends or a limit is hit; kill the run on a limit.

    The run has ended when its pid 1 has exited (a background process still holding the pipes
    dies with it), so the loop watches for that as well as for the pipes' end.
    """
    deadline = t0 + float(limits["timeout_seconds"])
    budget = int(limits["max_output_bytes"])
    buffers: dict[int, list[bytes]] = {out_r: [], err_r: []}
    open_fds = [out_r, err_r]
    hits_before = _pids_limit_hits(pids_events)
    killed_by: str | None = None
    ended_at: float | None = None
    while open_fds:
        now = time.monotonic()
        if ended_at is None and now >= deadline:
            killed_by = "timeout"
            break
        if ended_at is not None and now - ended_at > 2.0:
            break  # the run is over; stop waiting for stragglers' output
        ready, _, _ = select.select(open_fds, [], [], 0.05)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.remove(fd)
                continue
            buffers[fd].append(chunk[: max(budget, 0)])
            budget -= len(chunk)
        if budget < 0:
            killed_by = "output"
            break
        if pids_events and _pids_limit_hits(pids_events) > hits_before:
            killed_by = "processes"
            break
        if (
            ended_at is None
            and not ready
            and os.waitid(os.P_PID, init, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        ):
            ended_at = time.monotonic()
    # A run that closed its output can still be running: the wall clock holds until it ends.
    while killed_by is None and not os.waitid(os.P_PID, init, os.WEXITED | os.WNOHANG | os.WNOWAIT):
        if time.monotonic() >= deadline:
            killed_by = "timeout"
        else:
            time.sleep(0.01)
    if killed_by:
        os.kill(init, signal.SIGKILL)  # pid 1 of the run: the kernel ends all of it
    for fd in (out_r, err_r):
        os.close(fd)
    return b"".join(buffers[out_r]), b"".join(buffers[err_r]), killed_by


def _start(request: dict[str, Any], out_w: int, err_w: int) -> None:
    """Pid 1 of the run: its private view of the filesystem, then the command itself."""
    try:
        _ns.mount("none", "/", None, _ns.MS_REC | _ns.MS_PRIVATE)
        # /proc first: the kernel refuses a new proc mount once other mounts cover the tree.
        _ns.mount("proc", "/proc", "proc", _ns.MS_NOSUID | _ns.MS_NODEV | _ns.MS_NOEXEC)
        _ns.mount("tmpfs", "/tmp", "tmpfs", _ns.MS_NOSUID | _ns.MS_NODEV, "size=256m")
        _ns.mount(f"{SPOOL}/{request['dir']}", WORK, None, _ns.MS_BIND | _ns.MS_REC)
        _ns.mount("tmpfs", SPOOL, "tmpfs", _ns.MS_NOSUID | _ns.MS_NODEV, "size=4k,mode=0555")
    except OSError as exc:
        os.write(err_w, f"sandbox setup failed: {exc}\n".encode())
        os._exit(125)
    _run(request, out_w, err_w)


def _run(request: dict[str, Any], out_w: int, err_w: int) -> None:
    limits = request["limits"]
    try:
        os.chdir(WORK)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 1 << 16)
        os.setsid()
        _ns.apply_limits(limits, request.get("nproc"))
        _ns.drop_capabilities()
    except OSError as exc:
        os.write(2, f"sandbox setup failed: {exc}\n".encode())
        os._exit(125)
    _execute(list(request["argv"]), dict(request["env"]))


def _python_invocation(argv: list[str]) -> tuple[bool, list[str]] | None:
    """(isolated, remaining args) when argv runs this interpreter; None for other commands."""
    names = {sys.executable, os.path.basename(sys.executable), "python", "python3"}
    if not argv or argv[0] not in names:
        return None
    args, isolated = argv[1:], False
    while args and args[0] in _PYTHON_FLAGS:
        isolated = isolated or args[0] == "-I"
        args = args[1:]
    if not args or (args[0].startswith("-") and args[0] not in ("-m", "-c")):
        return None  # an option the warm path does not model: run a real interpreter
    return isolated, args


def _execute(argv: list[str], env: dict[str, str]) -> None:
    invocation = _python_invocation(argv)
    if invocation is None:
        try:
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(2, f"cannot run {argv[0]!r}: {exc.strerror}\n".encode())
            os._exit(127)
    isolated, args = invocation
    os.environ.clear()
    os.environ.update(env)
    code: Any = 0
    try:
        if args[0] == "-m":
            sys.argv = [args[1], *args[2:]]
            if not isolated:
                sys.path.insert(0, WORK)
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        elif args[0] == "-c":
            sys.argv = ["-c", *args[2:]]
            if not isolated:
                sys.path.insert(0, "")
            exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.argv = list(args)
            if not isolated:
                sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))
            runpy.run_path(args[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    os._exit(code & 0xFF)


if __name__ == "__main__":
    sys.exit(main())
