"""Scale-out on one PostgreSQL: several worker processes, each task exactly once, a killed
worker's tasks taken over, budgets no two workers can overspend, one migration at a time.

Every worker here is a real ``shipyard worker`` process. Each gets its own machine id, so
nothing is known about a killed one but its silence: the take-over is the one a lost
machine gets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from generate._fake_openai import FakeOpenAI
from shipyard.config import load_project
from shipyard.observe import audit
from shipyard.service import Runtime, list_workers
from shipyard.store import (
    ArtifactRow,
    AttemptRow,
    AuditRow,
    ReleaseRow,
    StepRow,
    TaskRow,
    WorkerRow,
    make_engine,
)
from shipyard.testing import scaffold_project
from support import run_cli

pytestmark = pytest.mark.postgres

FINAL = ("published", "error", "rejected", "invalid", "paused", "rolled_back")


def _start_worker(root: Path, name: str, *args: str) -> subprocess.Popen[str]:
    """A ``shipyard worker`` on a machine of its own (as far as liveness checks can tell)."""
    log = (root / f"{name}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "shipyard", "-C", str(root), "worker", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "SHIPYARD_MACHINE_ID": f"machine-{name}", "COLUMNS": "200"},
    )


def _submit_names(root: Path, count: int) -> list[str]:
    batch = root / "names.csv"
    batch.write_text("name\n" + "".join(f"n{i:04d}\n" for i in range(count)))
    done = run_cli(root, "submit", "note", "-b", str(batch), "--as", "me", "--json")
    assert done.returncode == 0, done.stderr
    submitted: list[str] = json.loads(done.stdout)["submitted"]
    assert len(submitted) == count
    return submitted


def _states(rt: Runtime) -> dict[str, str]:
    with rt.sessions() as session:
        return dict(session.execute(select(TaskRow.id, TaskRow.state)).all())


def _wait(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def _stop(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_three_workers_run_300_tasks_exactly_once_and_take_over_a_killed_one(
    tmp_path: Path, postgres: str
) -> None:
    recovery = 6.0
    root = scaffold_project(
        tmp_path / "scale",
        worker_concurrency=6,
        extra_toml=f"\n[workers]\nheartbeat_seconds = 1\nrecovery_seconds = {recovery}\n",
    )
    tasks = _submit_names(root, 300)
    project = load_project(root)
    rt = Runtime.open(project)
    workers = [_start_worker(root, f"w{n}") for n in range(3)]
    try:
        # Every worker registers and takes work.
        def three_busy() -> bool:
            listed = json.loads(run_cli(root, "workers", "--json").stdout)
            return len(listed) == 3 and all(w["in_flight"] for w in listed)

        _wait(three_busy, 90, "three workers each holding tasks")
        listed = json.loads(run_cli(root, "workers", "--json").stdout)
        assert {tuple(w["domains"]) for w in listed} == {("ops",)}
        assert all(w["state"] == "running" and w["heartbeat_age_seconds"] < 5 for w in listed)

        # Kill one mid-run, holding tasks; note which.
        victim = workers[0]
        with rt.sessions() as session:
            victim_id = session.scalar(select(WorkerRow.id).where(WorkerRow.pid == victim.pid))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.monotonic()
        # What it held when it died (nobody has taken it over yet: it is only silent). Read
        # in this process, at once: a CLI's start-up on a busy machine can outlast the
        # recovery time, and the answer would then be what is left after the take-over.
        gone = list_workers(rt, include_gone=True)
        held = next(w.in_flight for w in gone if w.id == victim_id)
        assert held

        def taken_over() -> bool:
            with rt.sessions() as session:
                row = session.get(WorkerRow, victim_id)
                return row is not None and row.taken_over_at is not None

        _wait(taken_over, recovery + 10, "the killed worker taken over")
        took = time.monotonic() - killed_at
        with rt.sessions() as session:
            row = session.get(WorkerRow, victim_id)
            assert row is not None and row.state == "dead"
            assert row.taken_over_by in {w["id"] for w in listed if w["id"] != victim_id}
        # Silent for the recovery time, then taken over on the next beat.
        assert recovery - 1.5 <= took <= recovery + 4, took

        def held_done() -> bool:
            states = _states(rt)
            return all(states[t] in FINAL for t in held)

        _wait(held_done, 60, "the killed worker's tasks finished by the others")

        def all_done() -> bool:
            return all(s in FINAL for s in _states(rt).values())

        _wait(all_done, 300, "all 300 tasks finished")
    finally:
        _stop(*workers)

    states = _states(rt)
    assert sorted(states) == sorted(tasks)
    assert set(states.values()) == {"published"}, {s for s in states.values()}
    with rt.sessions() as session:
        releases = session.execute(
            select(ReleaseRow.task_id, func.count()).group_by(ReleaseRow.task_id)
        ).all()
        assert len(releases) == 300 and {n for _, n in releases} == {1}
        # One artifact version per task (each note differs), registered once.
        assert session.scalar(select(func.count()).select_from(ArtifactRow)) == 300
        assert session.scalar(select(func.count(func.distinct(TaskRow.artifact_id)))) == 300
        # Every task left the same audit trail: the same entries, each once.
        trails: dict[str, list[tuple[str, str]]] = {}
        for task_id, action, decision in session.execute(
            select(AuditRow.task_id, AuditRow.action, AuditRow.decision)
        ).all():
            trails.setdefault(task_id, []).append((action, decision))
        assert len(trails) == 300
        assert len({tuple(sorted(trail)) for trail in trails.values()}) == 1
        assert sorted(trails[tasks[0]]).count(("release", "auto")) == 1
        # One chain, unbroken, however many workers wrote to it.
        assert audit.verify(session).ok
        # Steps the killed worker had under way ran again elsewhere; no other step did.
        rerun = session.scalars(select(StepRow.task_id).where(StepRow.runs > 1)).all()
        assert set(rerun) <= set(held)
    site = root / ".shipyard" / "sites" / "site" / "current" / "notes"
    assert len(list(site.iterdir())) == 300
    rt.close()


def test_two_workers_never_overspend_a_budget_together(tmp_path: Path, postgres: str) -> None:
    limit = Decimal("0.05")
    with FakeOpenAI() as fake:
        reply = '### FILE: note.json\n```json\n{"name": "x", "greeting": "hi"}\n```\n'
        for _ in range(40):
            # Each call costs $0.0115: 150 prompt and 1000 reply tokens at $10 per million.
            fake.reply(reply, prompt_tokens=150, completion_tokens=1000, delay=0.3)
        root = scaffold_project(
            tmp_path / "budget",
            worker_concurrency=4,
            extra_toml=(
                f'\n[tiers.local]\nprovider = "openai"\nmodel = "local-model"\n'
                f'base_url = "{fake.url}"\nmax_tokens = 1000\n'
                f"\n[budgets]\nday_usd = {limit}\n"
                '\n[prices."local-model"]\ninput_per_mtok = 10.0\noutput_per_mtok = 10.0\n'
            ),
        )
        config = root / "shipyard.toml"
        config.write_text(config.read_text().replace('tier = "template"', 'tier = "local"'))
        _submit_names(root, 16)
        rt = Runtime.open(load_project(root))
        workers = [_start_worker(root, f"b{n}") for n in range(2)]
        try:

            def settled() -> bool:
                return all(s in FINAL for s in _states(rt).values())

            _wait(settled, 120, "every task published or paused by the budget")
        finally:
            _stop(*workers)
        calls = len(fake.requests)
    with rt.sessions() as session:
        spent = session.scalar(select(func.sum(AttemptRow.cost_usd)))
        tiers = dict(
            session.execute(select(AttemptRow.tier, func.count()).group_by(AttemptRow.tier)).all()
        )
    # Four calls' worst cases fit in $0.05; the fifth's does not, whoever asks for it.
    assert calls == 4 and spent is not None and spent <= limit, (calls, spent)
    # The rest fell back to the free template tier (the chain below "local").
    assert tiers == {"local": 4, "template": 12}
    assert set(_states(rt).values()) == {"published"}
    rt.close()


def test_workers_starting_together_on_an_empty_database_migrate_it_once(
    tmp_path: Path, postgres: str
) -> None:
    root = scaffold_project(tmp_path / "empty")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "shipyard", "-C", str(root), "worker", "--until-idle"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    migrated = [err for _, err in outputs if "migrated the database schema" in err]
    assert len(migrated) == 1, outputs
    engine = make_engine(postgres)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


def test_sigterm_finishes_the_steps_under_way_and_starts_no_new_one(
    tmp_path: Path, postgres: str
) -> None:
    with FakeOpenAI() as fake:
        reply = '### FILE: note.json\n```json\n{"name": "x", "greeting": "hi"}\n```\n'
        for _ in range(8):
            fake.reply(reply, delay=2.0)
        root = scaffold_project(
            tmp_path / "drain",
            worker_concurrency=2,
            extra_toml=(
                f'\n[tiers.local]\nprovider = "openai"\nmodel = "local-model"\n'
                f'base_url = "{fake.url}"\n'
            ),
        )
        config = root / "shipyard.toml"
        config.write_text(config.read_text().replace('tier = "template"', 'tier = "local"'))
        _submit_names(root, 4)
        rt = Runtime.open(load_project(root))
        first = _start_worker(root, "d1")

        def generating() -> bool:
            with rt.sessions() as session:
                return bool(
                    session.scalar(
                        select(func.count())
                        .select_from(StepRow)
                        .where(StepRow.stage == "generate", StepRow.status == "running")
                    )
                )

        _wait(generating, 60, "a generation under way")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        log = (root / "d1.log").read_text()
        assert "taking no new step" in log
        with rt.sessions() as session:
            # The generations under way finished (their replies recorded); none started after.
            running = session.scalars(select(StepRow).where(StepRow.status == "running")).all()
            assert running == []
            generated = session.scalar(select(func.count()).select_from(AttemptRow))
            assert generated == 2
            row = session.scalar(select(WorkerRow))
            assert row is not None and row.state == "stopped"
        # Another worker takes over at once (a stopped worker needs no waiting) and finishes.
        second = _start_worker(root, "d2", "--until-idle")
        assert second.wait(timeout=90) == 0
        assert set(_states(rt).values()) == {"published"}
        with rt.sessions() as session:
            assert session.scalar(select(func.max(StepRow.runs))) == 1  # nothing ran twice
            assert session.scalar(select(func.count()).select_from(AttemptRow)) == 4
    rt.close()
