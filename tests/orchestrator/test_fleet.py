"""The fleet and what workers share through the database, on SQLite and PostgreSQL.

Worker membership (registration, heartbeats, take-overs, fencing), the step door a stopping
worker closes, the model-call window, budget holds, and schema migration: each is shared by
every worker through the database, so each is driven here from several engines at once
where that is what a user's fleet would do.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from shipyard.config import Project, load_project
from shipyard.errors import StateError
from shipyard.generate import Spend
from shipyard.orchestrator._fleet import Fleet, machine_id
from shipyard.orchestrator._ledger import drop_hold, hold
from shipyard.orchestrator._ratelimit import take_slot
from shipyard.orchestrator._stage import close_steps, open_steps, step, steps_under_way
from shipyard.service import Runtime, current_fleet, list_workers
from shipyard.store import (
    BudgetHoldRow,
    ModelCallRow,
    TaskRow,
    WorkerRow,
    database_now,
    make_engine,
    migrate,
    schema_status,
    session_factory,
    transaction,
)
from shipyard.testing import scaffold_project

FAST_BEATS = "\n[workers]\nheartbeat_seconds = 0.2\nrecovery_seconds = 1\n"
SLOW_BEATS = "\n[workers]\nheartbeat_seconds = 20\nrecovery_seconds = 60\n"
"""Beats too slow for the heartbeat thread to act while a test drives ``take_over`` itself."""

NO_SUCH_PID = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
"""Above the kernel's highest pid: no process has it, now or later."""


def _project(root: Path, extra_toml: str = "") -> Project:
    return load_project(scaffold_project(root, extra_toml=extra_toml))


def _url(database: str, tmp_path: Path) -> str:
    """The database under test as a URL (a fresh SQLite file, or the fresh PostgreSQL one)."""
    return f"sqlite:///{tmp_path / 'shared.db'}" if database == "sqlite" else database


@pytest.fixture
def engines(database: str, tmp_path: Path) -> Iterator[Callable[[], sessionmaker[Session]]]:
    """Session factories on the migrated database, each on an engine of its own (a worker)."""
    url = _url(database, tmp_path)
    made: list[Engine] = [make_engine(url)]
    migrate(made[0])

    def new() -> sessionmaker[Session]:
        made.append(make_engine(url))
        return session_factory(made[-1])

    yield new
    for engine in made:
        engine.dispose()


def _in_threads(count: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(n)`` in ``count`` threads released together; results (or exceptions)."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(n: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[n] = work(n)
        except Exception as exc:
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread never finished"
    return results


# -- membership ----------------------------------------------------------------------------


def test_machine_id_honours_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPYARD_MACHINE_ID", raising=False)
    own = machine_id()
    assert own
    monkeypatch.setenv("SHIPYARD_MACHINE_ID", "  container-7  ")
    assert machine_id() == "container-7"
    monkeypatch.setenv("SHIPYARD_MACHINE_ID", "m" * 100)
    assert machine_id() == "m" * 64  # the column holds 64
    monkeypatch.setenv("SHIPYARD_MACHINE_ID", "   ")
    assert machine_id() == own


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_a_launched_worker_registers_and_keeps_its_heartbeat_fresh(
    tmp_path: Path, database: str, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(_project(tmp_path / "p", FAST_BEATS))
    fleet = current_fleet()
    assert fleet is not None
    with rt.sessions() as session:
        row = session.get(WorkerRow, fleet.worker_id)
        assert row is not None
        first_beat = row.heartbeat_at
    assert (row.state, row.domains, row.pid) == ("running", ["ops"], os.getpid())
    assert row.machine == machine_id() and row.taken_over_at is None

    def beaten() -> bool:
        with rt.sessions() as session:
            found = session.get(WorkerRow, fleet.worker_id)
            return found is not None and found.heartbeat_at > first_beat

    _wait_for(beaten, 5, "the heartbeat to move past the first one")
    [listed] = list_workers(rt)
    assert listed.id == fleet.worker_id and listed.state == "running"
    assert listed.heartbeat_age < 1.0  # beats every 0.2 s

    fleet.leave()  # what shutdown does: it says goodbye and is no longer listed as live
    assert list_workers(rt) == []
    [gone] = list_workers(rt, include_gone=True)
    assert (gone.id, gone.state) == (fleet.worker_id, "stopped")


def _fake_worker(
    rt: Runtime,
    worker_id: str,
    *,
    machine: str = "machine-elsewhere",
    pid: int = 4242,
    state: str = "running",
    silent_for: float = 0.0,
) -> None:
    """A row as another worker would have written it, last heard ``silent_for`` s ago."""
    with transaction(rt.sessions) as session:
        now = database_now(session)
        session.add(
            WorkerRow(
                id=worker_id,
                host="elsewhere",
                machine=machine,
                pid=pid,
                domains=["ops"],
                version="0.0.0",
                state=state,
                started_at=now - timedelta(seconds=silent_for + 5),
                heartbeat_at=now - timedelta(seconds=silent_for),
            )
        )


def _rows(rt: Runtime) -> dict[str, WorkerRow]:
    with rt.sessions() as session:
        return {row.id: row for row in session.scalars(select(WorkerRow))}


def test_take_over_claims_exactly_the_workers_that_are_gone(
    tmp_path: Path, database: str, start_worker: Callable[..., Runtime]
) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(NO_SUCH_PID, 0)
    rt = start_worker(_project(tmp_path / "p", SLOW_BEATS))  # recovery 60 s, 1.5 beats 30 s
    fleet = current_fleet()
    assert fleet is not None
    here = machine_id()
    # Gone: silent past the recovery time (elsewhere, so only its silence is known) ...
    _fake_worker(rt, "silent-elsewhere", silent_for=120)
    # ... on this machine, a beat missed and its process gone ...
    _fake_worker(rt, "crashed-here", machine=here, pid=NO_SUCH_PID, silent_for=35)
    # ... and one that said goodbye (its pending work goes back at once).
    _fake_worker(rt, "stopped-elsewhere", state="stopped")
    # Not gone: late here but its process lives; a dead pid whose beat is not yet missed;
    # a recent beat from elsewhere.
    _fake_worker(rt, "late-here", machine=here, pid=os.getpid(), silent_for=35)
    _fake_worker(rt, "starting-here", machine=here, pid=NO_SUCH_PID, silent_for=1)
    _fake_worker(rt, "fresh-elsewhere", silent_for=1)

    claimed = fleet.take_over()
    assert sorted(claimed) == [
        ("crashed-here", 0),
        ("silent-elsewhere", 0),
        ("stopped-elsewhere", 0),
    ]
    rows = _rows(rt)
    for gone, state in (
        ("silent-elsewhere", "dead"),
        ("crashed-here", "dead"),
        ("stopped-elsewhere", "stopped"),
    ):
        assert (rows[gone].state, rows[gone].taken_over_by) == (state, fleet.worker_id), gone
        assert rows[gone].taken_over_at is not None
    for live in ("late-here", "starting-here", "fresh-elsewhere", fleet.worker_id):
        assert (rows[live].state, rows[live].taken_over_at) == ("running", None), live
    assert fleet.take_over() == []  # claimed once: nobody claims them again

    everyone = {w.id: w for w in list_workers(rt, include_gone=True)}
    assert len(everyone) == 7
    for gone in ("silent-elsewhere", "crashed-here", "stopped-elsewhere"):
        assert everyone[gone].taken_over_by == fleet.worker_id
        assert isinstance(everyone[gone].recovered, int) and everyone[gone].recovered == 0
    assert everyone["silent-elsewhere"].heartbeat_age >= 120
    live = {w.id for w in list_workers(rt)}
    assert live == {"late-here", "starting-here", "fresh-elsewhere", fleet.worker_id}


def test_two_workers_taking_over_at_once_claim_a_silent_one_once(
    tmp_path: Path, database: str, start_worker: Callable[..., Runtime]
) -> None:
    project = _project(tmp_path / "p", SLOW_BEATS)
    rt = start_worker(project)
    ours = current_fleet()
    assert ours is not None
    other_rt = Runtime.open(project)  # another worker: its own engine
    try:
        rival = Fleet(rt=other_rt, worker_id="rival-worker", domains=["ops"])
        for n in range(5):
            _fake_worker(rt, f"silent-{n}", silent_for=120)
        results = _in_threads(2, lambda n: (ours, rival)[n].take_over())
        assert not any(isinstance(r, Exception) for r in results), results
        taken = [worker for claims in results for worker, _ in claims]  # type: ignore[attr-defined]
        assert sorted(taken) == [f"silent-{n}" for n in range(5)]  # each exactly once
        rows = _rows(rt)
        for n in range(5):
            assert rows[f"silent-{n}"].taken_over_by in {ours.worker_id, "rival-worker"}
    finally:
        other_rt.close()


def test_a_worker_taken_over_is_fenced_off_from_beating(
    tmp_path: Path, database: str, start_worker: Callable[..., Runtime]
) -> None:
    rt = start_worker(_project(tmp_path / "p", SLOW_BEATS))
    fleet = current_fleet()
    assert fleet is not None
    _fake_worker(rt, "slow-worker", silent_for=120)  # only slow, but past the recovery time
    _fake_worker(rt, "prompt-worker", silent_for=5)
    assert [worker for worker, _ in fleet.take_over()] == ["slow-worker"]
    before = _rows(rt)

    slow = Fleet(rt=rt, worker_id="slow-worker", domains=["ops"])
    assert slow.beat() is False  # it must stop: another worker runs its workflows now
    prompt = Fleet(rt=rt, worker_id="prompt-worker", domains=["ops"])
    assert prompt.beat("draining") is True

    after = _rows(rt)
    assert after["slow-worker"].heartbeat_at == before["slow-worker"].heartbeat_at
    assert after["slow-worker"].state == "dead"
    assert after["prompt-worker"].heartbeat_at > before["prompt-worker"].heartbeat_at
    assert after["prompt-worker"].state == "draining"


# -- the step door -------------------------------------------------------------------------

_inside = threading.Event()
_release = threading.Event()
_next_ran = threading.Event()


@step("test-fleet-long-step")
def _long_step() -> str:
    _inside.set()
    if not _release.wait(timeout=30):
        raise AssertionError("the long step was never released")
    return "long done"


@step("test-fleet-next-step")
def _next_step() -> str:
    _next_ran.set()
    return "next done"


def test_closing_steps_waits_for_those_under_way_and_holds_new_ones_at_the_door() -> None:
    for event in (_inside, _release, _next_ran):
        event.clear()
    open_steps()
    results: dict[str, object] = {}
    first = threading.Thread(target=lambda: results.update(long=_long_step()))
    second = threading.Thread(target=lambda: results.update(next=_next_step()))
    try:
        first.start()
        assert _inside.wait(timeout=10)
        assert steps_under_way() == 1
        assert close_steps(0.05) == 1  # it did not finish in time: one still running

        second.start()
        # It must not start: give it a moment it would need to get past an open door.
        assert not _next_ran.wait(timeout=0.3)
        assert steps_under_way() == 1

        closer = threading.Thread(target=lambda: results.update(left=close_steps(30)))
        closer.start()
        _release.set()
        closer.join(timeout=30)
        assert results.get("left") == 0 and results.get("long") == "long done"
        assert not _next_ran.is_set() and steps_under_way() == 0

        open_steps()
        assert _next_ran.wait(timeout=10)
        second.join(timeout=10)
        assert results.get("next") == "next done"
    finally:
        _release.set()
        open_steps()
        for thread in (first, second):
            if thread.ident is not None:
                thread.join(timeout=10)
    assert steps_under_way() == 0


# -- the model-call window -----------------------------------------------------------------


class _Stop(Exception):
    """Raised by a fake sleep: the caller would have waited."""


def test_take_slot_admits_per_minute_then_waits_for_the_oldest_to_leave_the_window(
    engines: Callable[[], sessionmaker[Session]],
) -> None:
    sessions = engines()
    started = time.monotonic()
    pauses: list[float] = []

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"asked to sleep {seconds} s with room in the window")

    assert [take_slot(sessions, "openai", 3, sleep=no_sleep) for _ in range(3)] == [0.0] * 3
    assert take_slot(sessions, "other-key", 3, sleep=no_sleep) == 0.0  # keys do not share

    def fake_sleep(seconds: float) -> None:
        """A fake clock: the window's calls age by the pause instead of the test waiting."""
        pauses.append(seconds)
        with transaction(sessions) as session:
            for row in session.scalars(select(ModelCallRow).where(ModelCallRow.key == "openai")):
                row.at = row.at - timedelta(seconds=seconds)

    waited = take_slot(sessions, "openai", 3, sleep=fake_sleep)
    elapsed = time.monotonic() - started
    # The first call leaves the window a minute after it was made; looking again every 5 s.
    assert 60 - elapsed - 0.5 <= waited <= 60.0, (waited, elapsed)
    assert waited > 55
    assert waited == pytest.approx(sum(pauses))
    assert all(0 < pause <= 5.0 for pause in pauses) and len(pauses) >= 12
    with sessions() as session:
        now = database_now(session)
        newest = session.scalar(
            select(func.max(ModelCallRow.at)).where(ModelCallRow.key == "openai")
        )
    assert newest is not None and abs((now - newest).total_seconds()) < 5  # the call recorded

    def stop(seconds: float) -> None:
        pauses.append(seconds)
        raise _Stop

    with pytest.raises(_Stop):
        take_slot(sessions, "other-key", 1, sleep=stop)  # per_minute=1, one already made
    assert pauses[-1] == 5.0  # a minute away, but it looks again every 5 s


def test_workers_taking_slots_at_once_never_exceed_the_window(
    engines: Callable[[], sessionmaker[Session]],
) -> None:
    workers = [engines() for _ in range(8)]

    def refuse(seconds: float) -> None:
        raise _Stop

    results = _in_threads(8, lambda n: take_slot(workers[n], "shared", 5, sleep=refuse))
    assert sorted(type(r).__name__ for r in results) == ["_Stop"] * 3 + ["float"] * 5, results
    with workers[0]() as session:
        assert session.scalar(select(func.count()).select_from(ModelCallRow)) == 5


# -- budget holds --------------------------------------------------------------------------

TWO_CENTS = Spend(usd=Decimal("0.02"))


def _budget_project(tmp_path: Path) -> tuple[Runtime, str]:
    """A project whose day budget is $0.05 (two $0.02 calls fit), with one task in it."""
    rt = Runtime.open(_project(tmp_path / "p", "\n[budgets]\nday_usd = 0.05\n"))
    with transaction(rt.sessions) as session:
        now = database_now(session)
        session.add(
            TaskRow(
                id="t-budget",
                domain="ops",
                job_kind="note",
                inputs={"name": "a"},
                inputs_hash="0" * 64,
                state="running",
                submitted_by="me",
                submitted_at=now,
                updated_at=now,
            )
        )
    return rt, "t-budget"


def _held(rt: Runtime) -> dict[str, Decimal]:
    with rt.sessions() as session:
        return dict(session.execute(select(BudgetHoldRow.id, BudgetHoldRow.usd)).all())


def test_holds_count_against_the_budget_until_dropped_replaced_or_expired(
    tmp_path: Path, database: str
) -> None:
    rt, task = _budget_project(tmp_path)
    try:
        settings = rt.project.settings

        def take(key: str) -> str:
            return hold(rt.sessions, settings, task, key, TWO_CENTS, seconds=300)

        assert take("call-a") == "" and take("call-b") == ""
        refused = take("call-c")
        assert "all domains today budget $0.05" in refused and "$0.0400 spent" in refused
        assert set(_held(rt)) == {"call-a", "call-b"}
        assert take("call-a") == ""  # a re-run step replaces its own hold
        assert set(_held(rt)) == {"call-a", "call-b"}
        assert take("call-c") != ""

        with transaction(rt.sessions) as session:
            drop_hold(session, "call-b")
        assert take("call-c") == ""
        assert take("call-d") != ""

        with transaction(rt.sessions) as session:
            session.execute(
                update(BudgetHoldRow)
                .where(BudgetHoldRow.id == "call-a")
                .values(expires_at=database_now(session) - timedelta(seconds=1))
            )
        assert take("call-d") == ""  # a hold whose worker died mid-call stops counting
        assert take("call-e") != ""
    finally:
        rt.close()


def test_workers_holding_at_once_never_take_more_than_the_budget(
    tmp_path: Path, database: str
) -> None:
    rt, task = _budget_project(tmp_path)
    engines = [make_engine(rt.project.database_url) for _ in range(6)]
    try:
        settings = rt.project.settings
        workers = [session_factory(engine) for engine in engines]
        results = _in_threads(
            6,
            lambda n: hold(workers[n], settings, task, f"call-{n}", TWO_CENTS, seconds=300),
        )
        assert not any(isinstance(r, Exception) for r in results), results
        assert sum(r == "" for r in results) == 2, results
        assert all("all domains today budget $0.05" in str(r) for r in results if r)
        assert sum(_held(rt).values()) == Decimal("0.04")
    finally:
        for engine in engines:
            engine.dispose()
        rt.close()


# -- the schema ----------------------------------------------------------------------------


def test_migrate_once_then_refuse_a_schema_from_a_newer_shipyard(
    tmp_path: Path, database: str
) -> None:
    project = _project(tmp_path / "p")
    engine = make_engine(project.database_url)
    try:
        _, head = schema_status(engine)
        assert head is not None
        assert migrate(engine) == (None, head)
        assert migrate(engine) is None  # a second start changes nothing
        Runtime.open(project).close()

        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(StateError, match=r"revision '9999', newer than this Shipyard"):
            migrate(engine)
        with pytest.raises(StateError, match=r"revision '9999', newer than this Shipyard"):
            Runtime.open(project)
        with engine.connect() as conn:  # refused, not touched
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999"
    finally:
        engine.dispose()


def test_workers_migrating_one_fresh_sqlite_file_at_once_migrate_it_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    engines = [make_engine(url) for _ in range(3)]
    try:
        results = _in_threads(3, lambda n: migrate(engines[n]))
        assert not any(isinstance(r, Exception) for r in results), results
        done = [r for r in results if r is not None]
        _, head = schema_status(engines[0])
        assert done == [(None, head)]
        with engines[0].connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        for engine in engines:
            engine.dispose()
