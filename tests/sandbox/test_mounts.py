"""A run's own mounts and in-place runs: what the run sees, what it may write, what stays
refused, and that a one-off sandbox keeps the pool's isolation and limits."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from shipyard.errors import SandboxError
from shipyard.sandbox import (
    WORK,
    BwrapBackend,
    Limits,
    Mount,
    ProcessBackend,
    RunResult,
    bwrap_available,
)
from shipyard.sandbox._cgroup import PidsCgroup

needs_bwrap = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not available")

QUICK = Limits(timeout_seconds=10, cpu_seconds=10, memory_mb=1024, max_processes=32)

WRITE_PROBE = (
    "import sys\n"
    "try:\n"
    "    open(sys.argv[1], 'w').write('from the run')\n"
    "    print('wrote')\n"
    "except OSError as exc:\n"
    "    print('refused', exc.strerror)\n"
)


@pytest.fixture(scope="module")
def backend() -> Iterator[BwrapBackend]:
    if not bwrap_available():
        pytest.skip("bubblewrap is not available")
    sandbox = BwrapBackend(pool_size=1)
    yield sandbox
    sandbox.close()


def python(
    backend: BwrapBackend,
    workdir: Path,
    code: str,
    *args: str,
    mounts: Sequence[Mount] = (),
    in_place: bool = False,
) -> RunResult:
    argv = ["python", "-c", code, *args]
    return backend.run(argv, workdir=workdir, limits=QUICK, mounts=mounts, in_place=in_place)


@needs_bwrap
def test_a_read_only_mount_is_read_but_not_written(backend: BwrapBackend, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "env.txt").write_text("cached environment")
    work = tmp_path / "work"
    work.mkdir()
    code = f"print(open({str(cache / 'env.txt')!r}).read())\n" + WRITE_PROBE
    result = python(
        backend, work, code, str(cache / "env.txt"), mounts=[Mount(source=cache)], in_place=True
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "cached environment"
    assert result.stdout.splitlines()[1].startswith("refused"), result.stdout
    assert (cache / "env.txt").read_text() == "cached environment"


@needs_bwrap
def test_a_writable_mount_at_its_own_target_is_written(
    backend: BwrapBackend, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    mount = Mount(source=shared, target="/opt/shared", writable=True)
    result = python(backend, work, WRITE_PROBE, "/opt/shared/note.txt", mounts=[mount])
    assert result.stdout.strip() == "wrote", result
    assert (shared / "note.txt").read_text() == "from the run"


@needs_bwrap
def test_in_place_leaves_the_runs_changes_in_the_folder(
    backend: BwrapBackend, tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_text("VERSION = 1\n")
    code = (
        "import os\n"
        "print(os.getcwd(), os.environ['HOME'])\n"
        "open('app.py', 'w').write('VERSION = 2\\n')\n"
        "os.mkdir('pkg'); open('pkg/new.py', 'w').write('')\n"
    )
    result = python(backend, tmp_path, code, in_place=True)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [WORK, WORK]
    assert (tmp_path / "app.py").read_text() == "VERSION = 2\n"
    assert (tmp_path / "pkg" / "new.py").exists()


@needs_bwrap
def test_without_in_place_the_callers_folder_is_copied(
    backend: BwrapBackend, tmp_path: Path
) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / "input.txt").write_text("original")
    code = "print(open('input.txt').read()); open('input.txt', 'w').write('changed')"
    result = python(backend, work, code, mounts=[Mount(source=extra)])
    assert (result.exit_code, result.stdout.strip()) == (0, "original"), result
    assert (work / "input.txt").read_text() == "original"


@needs_bwrap
@pytest.mark.parametrize(
    "target",
    ["/", "/proc", "/proc/self", "/dev/shm", "/usr", "/usr/lib/python3", "/lib", "/etc",
     sys.prefix, "/sandbox", WORK, "relative/path"],
)  # fmt: skip
def test_mounts_that_would_hide_what_a_run_needs_are_refused(
    backend: BwrapBackend, tmp_path: Path, target: str
) -> None:
    if target == "/etc" and not Path("/etc/ld.so.cache").exists():
        pytest.skip("this system mounts nothing from /etc")
    with pytest.raises(SandboxError) as refused:
        python(backend, tmp_path, "print('ran')", mounts=[Mount(source=tmp_path, target=target)])
    assert target.rstrip("/") in refused.value.message or target == "/"
    assert refused.value.hint


@needs_bwrap
def test_a_mount_of_a_missing_path_is_refused(backend: BwrapBackend, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="does not exist"):
        python(backend, tmp_path, "pass", mounts=[Mount(source=tmp_path / "absent")])


@needs_bwrap
def test_a_one_off_run_is_as_isolated_as_a_pool_run(
    backend: BwrapBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    secret = tmp_path / "shipyard.db"
    secret.write_text("records")
    work = tmp_path / "work"
    work.mkdir()
    code = (
        "import os, socket\n"
        f"print(os.path.exists({str(secret)!r}), os.path.exists('/etc/passwd'))\n"
        "print('AWS_SECRET_ACCESS_KEY' in os.environ)\n"
        "print(len([p for p in os.listdir('/proc') if p.isdigit()]) < 6)\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 22), timeout=2)\n"
        "    print('network')\n"
        "except OSError:\n"
        "    print('no network')\n"
    )
    result = python(backend, work, code, in_place=True)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["False False", "False", "True", "no network"]


@needs_bwrap
def test_a_one_off_run_gets_the_same_environment_as_a_pool_run(
    backend: BwrapBackend, tmp_path: Path
) -> None:
    look = "import os; print(sorted(os.environ.items()))"
    pooled = python(backend, tmp_path, look)
    one_off = python(backend, tmp_path, look, in_place=True)
    assert pooled.exit_code == one_off.exit_code == 0, (pooled, one_off)
    assert one_off.stdout == pooled.stdout


@needs_bwrap
def test_exit_codes_and_missing_commands_are_results(backend: BwrapBackend, tmp_path: Path) -> None:
    failed = python(backend, tmp_path, "import sys; sys.exit(3)", in_place=True)
    assert (failed.exit_code, failed.killed_by) == (3, None)
    missing = backend.run(["no-such-command"], workdir=tmp_path, limits=QUICK, in_place=True)
    assert missing.exit_code == 127 and "no-such-command" in missing.stderr


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if marker in Path(entry.path, "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@needs_bwrap
def test_the_wall_clock_ends_the_whole_one_off_run(backend: BwrapBackend, tmp_path: Path) -> None:
    marker = f"{os.getpid()}{time.monotonic_ns() % 100000}"
    command = ["sh", "-c", f"sleep {marker} & while :; do :; done"]
    limits = Limits(timeout_seconds=1, cpu_seconds=30)
    result = backend.run(command, workdir=tmp_path, limits=limits, in_place=True)
    assert result.killed_by == "timeout" and result.timed_out, result
    assert result.duration_ms < 6000
    deadline = time.monotonic() + 5
    while _processes_with(f"sleep {marker}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_with(f"sleep {marker}") == [], "the run's background process outlived it"


@needs_bwrap
def test_the_output_cap_ends_a_one_off_run(backend: BwrapBackend, tmp_path: Path) -> None:
    limits = Limits(timeout_seconds=10, max_output_bytes=10_000)
    result = backend.run(
        ["python", "-c", "while True: print('x' * 1000)"],
        workdir=tmp_path,
        limits=limits,
        in_place=True,
    )
    assert result.killed_by == "output", result
    assert len(result.stdout) <= 10_000


@needs_bwrap
def test_the_cpu_limit_ends_a_one_off_run(backend: BwrapBackend, tmp_path: Path) -> None:
    limits = Limits(timeout_seconds=20, cpu_seconds=1)
    result = backend.run(
        ["python", "-c", "while True: pass"], workdir=tmp_path, limits=limits, in_place=True
    )
    assert result.killed_by == "cpu", result


def _pids_cgroup_available() -> bool:
    group = PidsCgroup.create(f"shipyard-probe-{os.getpid()}")
    if group is None:
        return False
    group.remove()
    return True


@needs_bwrap
@pytest.mark.skipif(
    os.getuid() == 0 and not _pids_cgroup_available(),
    reason="as root, a process limit needs a writable pids cgroup",
)
def test_the_process_limit_ends_a_one_off_fork_bomb(backend: BwrapBackend, tmp_path: Path) -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    limits = Limits(timeout_seconds=10, max_processes=20)
    result = backend.run(["python", "-c", bomb], workdir=tmp_path, limits=limits, in_place=True)
    assert result.killed_by == "processes", result


@needs_bwrap
def test_the_pool_still_serves_runs_without_these_options(
    backend: BwrapBackend, tmp_path: Path
) -> None:
    with backend.workspace() as folder:
        result = backend.run(
            ["python", "-c", "import os; print(os.listdir('/sandbox/spool'))"],
            workdir=folder,
            limits=QUICK,
        )
    # A pool slot mounts the spool of workspaces (emptied for the run); a one-off run has none.
    assert (result.exit_code, result.stdout.strip()) == (0, "[]"), result
    look = "import os; print(os.path.exists('/sandbox/spool'))"
    assert python(backend, tmp_path, look).stdout.strip() == "True"  # copied, then the pool
    assert python(backend, tmp_path, look, in_place=True).stdout.strip() == "False"


def test_the_process_backend_works_in_place(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("VERSION = 1\n")
    extra = tmp_path.parent / f"{tmp_path.name}-extra"
    extra.mkdir()
    (extra / "data.txt").write_text("visible")
    code = (
        f"print(open({str(extra / 'data.txt')!r}).read())\n"
        "open('app.py', 'w').write('VERSION = 2\\n')\n"
    )
    result = ProcessBackend().run(
        [sys.executable, "-c", code],
        workdir=tmp_path,
        limits=QUICK,
        mounts=[Mount(source=extra, target="/opt/elsewhere")],
        in_place=True,
    )
    assert (result.exit_code, result.stdout.strip()) == (0, "visible"), result
    assert (tmp_path / "app.py").read_text() == "VERSION = 2\n"
    assert result.egress_log == ()
