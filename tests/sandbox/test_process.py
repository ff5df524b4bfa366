from __future__ import annotations

import os
import select
import sys
from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import SandboxError
from shipyard.sandbox import Limits, ProcessBackend, RunResult, get_backend

PYTHON = sys.executable


def run(workdir: Path, argv: list[str], **limits: Any) -> RunResult:
    return ProcessBackend().run(argv, workdir=workdir, limits=Limits(**limits))


def exited_within(pid: int, seconds: float) -> bool:
    """True when process ``pid`` is gone (or a zombie) within ``seconds``; no polling sleep."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True  # already exited and reaped
    try:
        readable, _, _ = select.select([handle], [], [], seconds)
        return bool(readable)
    finally:
        os.close(handle)


def test_normal_command_reports_exit_code_and_output(tmp_path: Path) -> None:
    result = run(tmp_path, [PYTHON, "-c", "print('hello from the sandbox')"])

    assert result.exit_code == 0
    assert result.stdout == "hello from the sandbox\n"
    assert result.stderr == ""
    assert result.timed_out is False
    assert result.killed_by is None
    assert result.backend == "process"
    assert result.duration_ms > 0


def test_failing_command_is_reported_not_raised(tmp_path: Path) -> None:
    result = run(
        tmp_path, [PYTHON, "-c", "import sys; sys.stderr.write('went wrong'); sys.exit(3)"]
    )

    assert result.exit_code == 3
    assert result.stderr == "went wrong"
    assert result.killed_by is None


def test_command_runs_in_the_workdir(tmp_path: Path) -> None:
    (tmp_path / "input.txt").write_text("from the workspace", encoding="utf-8")

    result = run(tmp_path, [PYTHON, "-c", "print(open('input.txt').read())"])

    assert result.stdout.strip() == "from the workspace"


def test_child_sees_none_of_the_parent_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "hunter2-do-not-leak")
    assert os.environ["SECRET_TOKEN"] == "hunter2-do-not-leak"

    result = run(tmp_path, ["env"])

    variables = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert result.exit_code == 0
    assert "SECRET_TOKEN" not in variables
    assert "hunter2-do-not-leak" not in result.stdout
    assert variables["HOME"] == str(tmp_path)
    assert variables["TMPDIR"] == str(tmp_path)


def test_explicit_env_is_passed_to_the_child(tmp_path: Path) -> None:
    result = ProcessBackend().run(
        ["env"], workdir=tmp_path, limits=Limits(), env={"CHECK_MODE": "strict"}
    )

    assert "CHECK_MODE=strict" in result.stdout.splitlines()


def test_wall_clock_timeout_kills_an_infinite_loop(tmp_path: Path) -> None:
    result = run(tmp_path, [PYTHON, "-c", "while True: pass"], timeout_seconds=1)

    assert result.timed_out is True
    assert result.killed_by == "timeout"
    assert result.exit_code < 0
    assert 900 <= result.duration_ms < 2500


def test_cpu_limit_kills_a_busy_loop(tmp_path: Path) -> None:
    result = run(tmp_path, [PYTHON, "-c", "while True: pass"], cpu_seconds=1, timeout_seconds=20)

    assert result.killed_by == "cpu"
    assert result.timed_out is False
    assert result.exit_code < 0
    assert result.duration_ms < 2500


def test_output_flood_is_capped_and_killed(tmp_path: Path) -> None:
    result = run(
        tmp_path, [PYTHON, "-c", "print('x' * 10**7)"], max_output_bytes=10000, timeout_seconds=20
    )

    assert result.killed_by == "output"
    assert result.timed_out is False
    assert 0 < len(result.stdout.encode()) <= 10000
    assert len(result.stdout.encode()) + len(result.stderr.encode()) <= 10000
    assert set(result.stdout) == {"x"}


def test_file_size_limit_kills_a_large_write(tmp_path: Path) -> None:
    result = run(tmp_path, ["dd", "if=/dev/zero", "of=big.bin", "bs=1M", "count=3"], max_file_mb=1)

    assert result.killed_by == "file_size"
    assert (tmp_path / "big.bin").stat().st_size <= 1024 * 1024


def test_memory_limit_stops_a_huge_allocation(tmp_path: Path) -> None:
    result = run(
        tmp_path, [PYTHON, "-c", "b = bytearray(4 * 1024**3); print('allocated')"], memory_mb=256
    )

    assert result.exit_code != 0
    assert "allocated" not in result.stdout
    assert "MemoryError" in result.stderr


def test_background_grandchild_does_not_outlive_the_run(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        ["sh", "-c", "sleep 30 & echo $! > grandchild.pid; echo started"],
        timeout_seconds=10,
    )

    assert result.exit_code == 0
    assert result.stdout == "started\n"
    pid = int((tmp_path / "grandchild.pid").read_text())
    assert exited_within(pid, 2.0), f"grandchild {pid} ('sleep 30') is still running"
    assert result.duration_ms < 4000


def test_nonexistent_command_raises_sandbox_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError) as caught:
        run(tmp_path, ["shipyard-no-such-command-xyz"])

    assert "shipyard-no-such-command-xyz" in caught.value.message


def test_process_backend_declares_itself_unisolated() -> None:
    backend = get_backend("process")

    assert isinstance(backend, ProcessBackend)
    assert backend.isolated is False
