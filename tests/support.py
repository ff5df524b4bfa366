"""Helpers for tests (importable as ``support``): example copies, job kinds, bounded waits."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from shipyard.config import load_project
from shipyard.jobs import JobKind, load_job_kind
from shipyard.model import CheckReport, Finding
from shipyard.service import Runtime, create_token, find_task, task_story

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "ecommerce"
PG_ENV = "SHIPYARD_TEST_POSTGRES_URL"


# A valid landing-page / product-copy row, as a CSV would give it (all strings).
PRODUCT = {
    "sku": "SKU-101",
    "name": "Trail Mug",
    "price": "18.50",
    "currency": "USD",
    "shipping_weight_kg": "0.4",
    "category": "Kitchen",
    "features": "Enamel|Holds 350 ml",
    "image": "/images/sku-101.jpg",
    "image_alt": "A blue enamel mug on a rock",
    "brand": "Northbound",
}

SETTLED = {
    "waiting_approval",
    "waiting_input",
    "paused",
    "published",
    "failed",
    "rejected",
    "error",
    "done",
    "denied",
}
"""Task states after which nothing happens without a person."""


IMMEDIATE = """
// The tests' copy has no rollout plan: its production site switches at once, by leave.
@id("tests-release-at-once")
permit(principal, action == Action::"release_immediately", resource == Target::"storefront-site");
"""


def copy_example(dest: Path, *, canary: bool = False) -> Path:
    """A private copy of the e-commerce example; releases switch at once unless ``canary``
    (a canary needs a gateway serving the site, which most tests do not run). Switching a
    production target at once takes a policy's leave, which the copy then has."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".shipyard", "__pycache__"))
    if not canary:
        config = dest / "shipyard.toml"
        text = config.read_text()
        rollout = re.compile(r"^\[targets\.[a-z-]+\.rollout\].*?(?=^\[|\Z)", re.M | re.S)
        config.write_text(rollout.sub("", text))
        policy = dest / "policies" / "storefront.cedar"
        policy.write_text(policy.read_text() + IMMEDIATE)
    return dest


def as_person(root: Path, person: str, role: str = "admin") -> dict[str, str]:
    """The environment of a command line authenticated as ``person`` of the project at
    ``root``: a personal token of theirs in SHIPYARD_TOKEN (made here, as the person would
    with `shipyard tokens create`)."""
    rt = Runtime.open(load_project(root))
    try:
        _, token = create_token(rt, person, role, actor=person)
    finally:
        rt.close()
    return {"SHIPYARD_TOKEN": token}


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


def make_kind(root: Path, checks: str, extra: dict[str, str] | None = None) -> JobKind:
    """A job kind folder whose job.toml lists ``checks`` (a TOML array), loaded for real."""
    folder = root / "widget"
    folder.mkdir()
    (folder / "job.toml").write_text(
        'name = "widget"\n'
        'input_key = "sku"\n'
        'outputs = { "index.html" = "page.html.j2" }\n'
        f"checks = {checks}\n",
        encoding="utf-8",
    )
    (folder / "input.schema.json").write_text(
        json.dumps({"type": "object", "properties": {"sku": {"type": "string"}}}),
        encoding="utf-8",
    )
    (folder / "prompt.md.j2").write_text("Write {{ sku }}.\n", encoding="utf-8")
    (folder / "page.html.j2").write_text("<h1>{{ sku }}</h1>\n", encoding="utf-8")
    for name, content in (extra or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content, encoding="utf-8")
    return load_job_kind(folder, domain="d")


def rules(report: CheckReport) -> list[str]:
    return [f.rule for f in report.findings]


def finding(report: CheckReport, rule: str) -> Finding:
    matches = [f for f in report.findings if f.rule == rule]
    assert len(matches) == 1, report.findings
    return matches[0]


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)
