"""A worker killed with SIGKILL mid-task: the next worker resumes the task where it stopped,
runs no finished step again, and publishes exactly once. Workers are real processes here."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from shipyard.config import load_project
from shipyard.service import Runtime, list_tasks, task_story
from shipyard.store import AuditRow
from support import as_person, copy_example, run_cli

pytestmark = pytest.mark.slow

INPUTS = [
    "sku=SKU-201", "name=Camp Kettle", "price=39.00", "currency=EUR",
    "shipping_weight_kg=0.9", "features=Steel|1.2 litres", "image=/images/kettle.jpg",
    "image_alt=A steel kettle over a camp stove", "brand=Northbound",
]  # fmt: skip


def _submit(root: Path) -> str:
    args = [a for pair in INPUTS for a in ("-i", pair)]
    owner = as_person(root, "shop-owner")
    done = run_cli(root, "submit", "landing-page", *args, "--as", "shop-owner", "--json", env=owner)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["submitted"][0])


def _worker(root: Path, crash_at: str = "") -> int:
    env = {"SHIPYARD_CRASHPOINTS": crash_at} if crash_at else {}
    done = run_cli(root, "worker", "--until-idle", env=env)
    if not crash_at:
        assert done.returncode == 0, done.stderr
    return done.returncode


def _runs(rt: Runtime, task_id: str) -> dict[str, int]:
    return {f"{s.stage}{s.attempt or ''}": s.runs for s in task_story(rt, task_id).steps}


@pytest.mark.parametrize(
    ("point", "rerun"), [("verify.before", "verify1"), ("register.after", "register")]
)
def test_killed_mid_task_resumes_without_redoing_finished_steps(
    tmp_path: Path, database: str, point: str, rerun: str
) -> None:
    root = copy_example(tmp_path / "shop")
    task_id = _submit(root)
    assert _worker(root, crash_at=point) == -signal.SIGKILL
    assert _worker(root) == 0

    rt = Runtime.open(load_project(root))
    try:
        assert task_story(rt, task_id).task.state == "waiting_approval"
        runs = _runs(rt, task_id)
        assert runs[rerun] == 2, runs  # the step in flight ran again ...
        assert runs["generate1"] == 1 and runs["validate"] == 1, runs  # ... finished ones did not
        assert len(list_tasks(rt)) == 1
    finally:
        rt.close()


def _gate_closed(rt: Runtime, task_id: str) -> bool:
    return any(s.stage == "gate" and s.status == "done" for s in task_story(rt, task_id).steps)


def test_killed_after_the_gate_decided_it_is_decided_and_audited_once(
    tmp_path: Path, database: str
) -> None:
    root = copy_example(tmp_path / "shop")
    task_id = _submit(root)
    assert _worker(root, crash_at="gate.after") == -signal.SIGKILL
    rt = Runtime.open(load_project(root))
    # The task already shows waiting_approval, so `--until-idle` would leave at once: run a
    # worker until its take-over has run the gate step again.
    worker = subprocess.Popen(
        [sys.executable, "-m", "shipyard", "-C", str(root), "worker"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while _runs(rt, task_id)["gate"] < 2 or not _gate_closed(rt, task_id):
            assert time.monotonic() < deadline, _runs(rt, task_id)
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    try:
        assert task_story(rt, task_id).task.state == "waiting_approval"
        assert _runs(rt, task_id)["gate"] == 2  # the step ran again ...
        with rt.sessions() as session:  # ... and found its decision made
            gated = session.scalars(
                select(AuditRow.decision).where(
                    AuditRow.task_id == task_id, AuditRow.action == "release"
                )
            ).all()
        assert gated == ["needs_approval"]
    finally:
        rt.close()


def test_killed_after_the_switch_publishes_exactly_once(tmp_path: Path, database: str) -> None:
    root = copy_example(tmp_path / "shop")
    task_id = _submit(root)
    _worker(root)
    operator = as_person(root, "demo-operator")
    approved = run_cli(root, "approve", task_id, "--as", "demo-operator", env=operator)
    assert approved.returncode == 0, approved.stderr

    assert _worker(root, crash_at="release.after_switch") == -signal.SIGKILL
    site = root / ".shipyard" / "sites" / "storefront-site"
    assert (site / "current").is_symlink()  # the switch happened before the kill
    assert _worker(root) == 0

    rt = Runtime.open(load_project(root))
    try:
        story = task_story(rt, task_id)
        assert story.task.state == "published"
        assert story.release is not None and story.release.version == "000001"
        release_step = next(s for s in story.steps if s.stage == "release")
        assert release_step.runs == 2 and release_step.detail["already_live"] is True
    finally:
        rt.close()
    versions = sorted(p.name for p in (site / "versions").iterdir())
    assert versions == ["000001"], versions  # published once, not twice


def test_killed_mid_bake_resumes_the_rollout_where_it_was(tmp_path: Path, database: str) -> None:
    from canary_support import gateway

    root = copy_example(tmp_path / "shop", canary=True)
    task_id = _submit(root)
    _worker(root)
    operator = as_person(root, "demo-operator")
    approved = run_cli(root, "approve", task_id, "--as", "demo-operator", env=operator)
    assert approved.returncode == 0, approved.stderr
    with gateway(load_project(root)):  # probes only: each stage goes on when its bake is over
        # Killed at its first look at the 50 % stage, halfway through the 20 % -> 100 % rollout.
        assert _worker(root, crash_at="canary.watch1") == -signal.SIGKILL
        rt = Runtime.open(load_project(root))
        try:
            story = task_story(rt, task_id)
            assert story.task.state == "releasing"
            assert story.release is not None and story.release.state == "canary"
            assert story.release.weight == 50
        finally:
            rt.close()
        assert _worker(root) == 0
    rt = Runtime.open(load_project(root))
    try:
        story = task_story(rt, task_id)
        assert story.task.state == "published", story.task.error
        assert story.release is not None and story.release.state == "live"
        assert [(v["weight"], v["outcome"]) for v in story.release.verdicts] == [
            (20, "pass"),
            (50, "pass"),
        ]
        runs = _runs(rt, task_id)
        assert runs["deploy"] == 1 and runs["release"] == 1, runs  # deployed once, promoted once
    finally:
        rt.close()
    site = root / ".shipyard" / "sites" / "storefront-site"
    assert sorted(p.name for p in (site / "versions").iterdir()) == ["000001"]
    assert not (site / "candidates" / task_id).exists()
