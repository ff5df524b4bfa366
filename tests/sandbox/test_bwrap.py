"""Hostile snippets against the bubblewrap backend: each ends as a failed run with a clear
reason, the host is unaffected, and the next run works normally."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.sandbox import BwrapBackend, Limits, RunResult, bwrap_available
from shipyard.sandbox._cgroup import PidsCgroup

pytestmark = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not available")

QUICK = Limits(timeout_seconds=5, cpu_seconds=5, memory_mb=512, max_processes=32)


@pytest.fixture(scope="module")
def backend() -> Iterator[BwrapBackend]:
    sandbox = BwrapBackend(pool_size=2)
    yield sandbox
    sandbox.close()


def run(backend: BwrapBackend, code: str, limits: Limits = QUICK) -> RunResult:
    with backend.workspace() as folder:
        return backend.run(["python", "-c", code], workdir=folder, limits=limits)


def assert_still_works(backend: BwrapBackend) -> None:
    result = run(backend, "print(6 * 7)")
    assert (result.exit_code, result.stdout.strip(), result.killed_by) == (0, "42", None)


def test_a_normal_run_sees_only_its_workspace(backend: BwrapBackend) -> None:
    with backend.workspace() as folder:
        (folder / "data.txt").write_text("hello")
        result = backend.run(
            ["python", "-c", "import os; print(os.getcwd(), open('data.txt').read())"],
            workdir=folder,
            limits=QUICK,
        )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["/sandbox/work", "hello"]
    assert result.backend == "bwrap"


def test_a_one_shot_backend_runs_each_command_in_a_sandbox_of_its_own(tmp_path: Path) -> None:
    """No warm pool: the run gets bubblewrap to itself, isolated and limited like a slot's."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "data.txt").write_text("hello")
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's")
    sandbox = BwrapBackend(one_shot=True)
    try:
        sandbox.warm()  # nothing to warm
        code = (
            "import os, socket\n"
            f"print(os.getcwd(), open('data.txt').read(), os.path.exists({str(secret)!r}))\n"
            "open('data.txt', 'w').write('changed')\n"
            "try:\n"
            "    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
            "except OSError:\n"
            "    print('no network')\n"
        )
        result = sandbox.run(["python", "-c", code], workdir=folder, limits=QUICK)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.split() == ["/sandbox/work", "hello", "False", "no", "network"]
        assert (folder / "data.txt").read_text() == "hello"  # it ran on a copy
        assert sandbox._idle == []  # and left no pool slot behind
        slow = sandbox.run(
            ["python", "-c", "while True: pass"], workdir=folder, limits=Limits(timeout_seconds=1)
        )
        assert slow.killed_by == "timeout"
    finally:
        sandbox.close()


def test_endless_loop_is_stopped_by_the_wall_clock(backend: BwrapBackend) -> None:
    result = run(backend, "while True: pass", Limits(timeout_seconds=1, cpu_seconds=30))
    assert result.timed_out and result.killed_by == "timeout"
    assert result.duration_ms < 5000
    assert_still_works(backend)


def test_cpu_limit_ends_a_busy_run(backend: BwrapBackend) -> None:
    result = run(backend, "while True: pass", Limits(timeout_seconds=20, cpu_seconds=1))
    assert result.killed_by == "cpu", result
    assert_still_works(backend)


def _pids_cgroup_available() -> bool:
    group = PidsCgroup.create(f"shipyard-probe-{os.getpid()}")
    if group is None:
        return False
    group.remove()
    return True


@pytest.mark.skipif(
    os.getuid() == 0 and not _pids_cgroup_available(),
    reason="as root, a process limit needs a writable pids cgroup",
)
def test_fork_bomb_hits_the_process_limit(backend: BwrapBackend) -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = run(backend, bomb, Limits(timeout_seconds=10, max_processes=20))
    assert result.killed_by == "processes", result
    assert_still_works(backend)


def test_endless_allocation_fails_with_memory_error(backend: BwrapBackend) -> None:
    result = run(backend, "blocks = []\nwhile True: blocks.append(bytearray(50_000_000))")
    assert result.exit_code != 0
    assert "MemoryError" in result.stderr
    assert_still_works(backend)


def test_output_flood_is_capped(backend: BwrapBackend) -> None:
    limits = Limits(timeout_seconds=10, max_output_bytes=10_000)
    result = run(backend, "while True: print('x' * 1000)", limits)
    assert result.killed_by == "output"
    assert len(result.stdout) <= 10_000
    assert_still_works(backend)


def test_no_network_at_all(backend: BwrapBackend) -> None:
    code = "import socket\nsocket.create_connection(('127.0.0.1', 5432), timeout=2)"
    result = run(backend, code)
    assert result.exit_code != 0
    assert "Error" in result.stderr  # unreachable / refused: there is no network


def test_host_files_are_out_of_reach(backend: BwrapBackend, tmp_path: Path) -> None:
    secret = tmp_path / "shipyard.db"
    secret.write_text("records")
    home = Path.home() / ".ssh"
    code = (
        "import os\n"
        f"for path in ({str(secret)!r}, {str(home)!r}, '/etc/passwd', '/etc/shadow'):\n"
        "    print(path, os.path.exists(path))\n"
    )
    result = run(backend, code)
    assert result.exit_code == 0, result.stderr
    assert all(line.endswith("False") for line in result.stdout.splitlines()), result.stdout


def test_the_system_is_read_only(backend: BwrapBackend) -> None:
    code = (
        "import sys\n"
        "for path in ('/usr/evil', sys.prefix + '/evil'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "        print('wrote', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno)\n"
    )
    result = run(backend, code)
    assert "wrote" not in result.stdout and result.stdout.count("refused") == 2, result


def test_parent_environment_does_not_leak(
    backend: BwrapBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    result = run(backend, "import os; print(sorted(os.environ))")
    assert "AWS_SECRET_ACCESS_KEY" not in result.stdout
    assert "do-not-leak" not in result.stdout


def test_signals_and_proc_reach_nothing_outside_the_run(backend: BwrapBackend) -> None:
    code = (
        "import os, signal\n"
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
        "os.kill(os.getppid(), signal.SIGKILL)\n"
        "os.kill(1, signal.SIGKILL)\n"
        "print('alive')\n"
    )
    result = run(backend, code)
    pids = result.stdout.splitlines()[0]
    assert pids == "[1]", result.stdout  # the run is pid 1 of its own namespace: nothing else
    assert_still_works(backend)
    assert os.getpid() > 0  # the test process (the host) is still here


def test_one_run_never_sees_another(backend: BwrapBackend) -> None:
    leave_behind = (
        "import subprocess\n"
        "open('mine.txt', 'w').write('secret')\n"
        "subprocess.Popen(['sleep', '30'])\n"
    )
    first = run(backend, leave_behind)
    assert first.exit_code == 0, first.stderr
    look = (
        "import os\n"
        "print(os.listdir('.'), os.listdir('/sandbox/spool'), os.listdir('/tmp'))\n"
        "print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
    )
    second = run(backend, look)
    assert second.stdout.splitlines() == ["[] [] []", "[1]"], second


def test_concurrent_runs_are_isolated_from_each_other(backend: BwrapBackend) -> None:
    code = (
        "import os, time\n"
        "open('mark', 'w').write(str(os.getpid()))\n"
        "time.sleep(0.3)\n"
        "print(sorted(os.listdir('.')), os.listdir('/sandbox/spool'))\n"
    )
    results: list[RunResult] = []
    threads = [threading.Thread(target=lambda: results.append(run(backend, code))) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [r.stdout.strip() for r in results] == ["['mark'] []", "['mark'] []"], results


def test_the_callers_folder_is_copied_not_written(backend: BwrapBackend, tmp_path: Path) -> None:
    (tmp_path / "input.txt").write_text("original")
    code = "open('input.txt', 'w').write('changed'); open('new.txt', 'w').write('x')"
    result = backend.run(["python", "-c", code], workdir=tmp_path, limits=QUICK)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "input.txt").read_text() == "original"
    assert not (tmp_path / "new.txt").exists()


def test_non_python_commands_run_too(backend: BwrapBackend) -> None:
    with backend.workspace() as folder:
        result = backend.run(["sh", "-c", "echo $HOME; id -u"], workdir=folder, limits=QUICK)
    assert result.exit_code == 0 and result.stdout.split()[0] == "/sandbox/work", result


def test_a_run_that_closes_its_output_is_still_timed(backend: BwrapBackend) -> None:
    code = "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(60)"
    result = run(backend, code, Limits(timeout_seconds=1, cpu_seconds=5))
    assert result.killed_by == "timeout", result
    assert result.duration_ms < 5000
    assert_still_works(backend)
