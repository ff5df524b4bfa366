"""Helpers for tests (importable as ``support``): example copies and bounded waits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from shipyard.orchestrator import Runtime, find_task, task_story

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "ecommerce"
PG_ENV = "SHIPYARD_TEST_POSTGRES_URL"


def copy_example(dest: Path) -> Path:
    """A private copy of the e-commerce example."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".shipyard", "__pycache__"))
    return dest


def wait_for_state(rt: Runtime, task_id: str, states: set[str], timeout: float = 60.0) -> str:
    """Poll the task's state until it is one of ``states`` (fails with the last state seen)."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = find_task(rt, task_id).state
        if state in states:
            return state
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} still {state!r} after {timeout}s (wanted {states})")


def run_cli(
    root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run ``shipyard -C root ARGS`` as a separate process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "shipyard", "-C", str(root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def wait_until_finished(rt: Runtime, task_id: str, timeout: float = 60.0) -> str:
    """Poll until the workflow has closed the task and recorded its last step; its state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        story = task_story(rt, task_id)
        # The task is closed inside the last step; the step's own record follows a moment later.
        if story.task.finished_at is not None and all(s.finished_at for s in story.steps):
            return story.task.state
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} not finished after {timeout}s")
