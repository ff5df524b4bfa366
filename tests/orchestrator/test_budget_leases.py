"""Day budgets leased to workers: calls held from a worker's lease never take more than the
budget, the shared row is taken once per lease rather than once per call, a recorded call
moves from the lease's reserve to the budget's spend without being counted twice or missed,
and a dead worker's lease lapses. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from shipyard.config import load_project
from shipyard.generate import Spend
from shipyard.orchestrator._leases import BudgetLeases
from shipyard.orchestrator._ledger import Budget, binding, committed, hold, limits_for
from shipyard.service import Runtime
from shipyard.store import (
    AttemptRow,
    BudgetHoldRow,
    BudgetLeaseRow,
    LockRow,
    TaskRow,
    database_now,
    make_engine,
    session_factory,
    transaction,
)
from shipyard.testing import scaffold_project

THREE_CENTS = Spend(usd=Decimal("0.03"), tokens=300)


@pytest.fixture
def budget_project(tmp_path: Path, database: str) -> Iterator[Callable[[str], Runtime]]:
    """A project with the budgets given and one running task in domain ``ops`` (``t-1``,
    ``t-2`` for a second project: on PostgreSQL they share the database)."""
    opened: list[Runtime] = []

    def make(budgets: str) -> Runtime:
        root = scaffold_project(
            tmp_path / f"p{len(opened)}", extra_toml=f"\n[budgets]\n{budgets}\n"
        )
        rt = Runtime.open(load_project(root))
        opened.append(rt)
        with transaction(rt.sessions) as session:
            now = database_now(session)
            session.add(
                TaskRow(
                    id=f"t-{len(opened)}", domain="ops", job_kind="note", inputs={"name": "a"},
                    inputs_hash="0" * 64, state="running", submitted_by="me",
                    submitted_at=now, updated_at=now,
                )
            )  # fmt: skip
        return rt

    yield make
    for rt in opened:
        rt.close()


def _day_budget(rt: Runtime) -> Budget:
    with rt.sessions() as session:
        task = session.get(TaskRow, "t-1")
        assert task is not None
        [day] = [b for b in binding(rt.project.settings, task) if b.daily]
    return day


def _shared_row_taken(rt: Runtime, scope: str = "all domains today") -> int:
    """How many times the budget's shared row was locked."""
    with rt.sessions() as session:
        return session.scalar(select(LockRow.version).where(LockRow.name == f"budget {scope}")) or 0


def test_a_lease_takes_the_shared_row_once_for_many_calls_where_holds_take_it_per_call(
    budget_project: Callable[[str], Runtime],
) -> None:
    rt = budget_project("day_usd = 100.0")
    leases = rt.budget_leases
    assert leases is not None
    settings = rt.project.settings
    for n in range(20):
        assert (
            hold(rt.sessions, settings, "t-1", f"call-{n}", THREE_CENTS, seconds=300, leases=leases)
            == ""
        )
    assert _shared_row_taken(rt) == 1  # one renewal leased room for 32 calls
    with rt.sessions() as session:
        [lease] = session.scalars(select(BudgetLeaseRow)).all()
        assert session.scalars(select(BudgetHoldRow)).all() == []  # nothing written per call
    assert (lease.owner, lease.scope, lease.usd) == (
        leases.owner,
        "all domains today",
        Decimal("0.96"),
    )
    assert leases.in_flight("all domains today") == Spend(usd=Decimal("0.60"), tokens=6000)

    strict = budget_project("day_usd = 100.0\nlease_calls = 0")
    assert strict.budget_leases is None
    before = _shared_row_taken(strict)
    for n in range(20):
        assert (
            hold(
                strict.sessions, strict.project.settings, "t-2", f"c-{n}", THREE_CENTS, seconds=300
            )
            == ""
        )
    assert _shared_row_taken(strict) == before + 20


def test_workers_holding_from_leases_at_once_never_take_more_than_the_budget(
    budget_project: Callable[[str], Runtime], database: str, tmp_path: Path
) -> None:
    rt = budget_project("day_usd = 1.0")
    settings = rt.project.settings
    workers, threads = 3, 4
    engines: list[Engine] = [make_engine(rt.project.database_url) for _ in range(workers)]
    fleet = [
        BudgetLeases(session_factory(engine), owner=f"worker-{n}", calls=4)
        for n, engine in enumerate(engines)
    ]
    held: list[list[str]] = [[] for _ in range(workers * threads)]
    refusals: list[str] = []
    failures: list[BaseException] = []
    start = threading.Barrier(workers * threads)

    def work(slot: int) -> None:
        leases = fleet[slot % workers]
        try:
            start.wait(timeout=30)
            for n in range(100):
                key = f"slot{slot}-{n}"
                reason = hold(
                    leases.sessions, settings, "t-1", key, THREE_CENTS, seconds=300, leases=leases
                )
                if reason:
                    refusals.append(reason)
                    return
                held[slot].append(key)
        except BaseException as exc:
            failures.append(exc)

    running = [threading.Thread(target=work, args=(slot,)) for slot in range(workers * threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(timeout=120)
    for engine in engines:
        engine.dispose()
    assert not failures, failures
    calls = sum(len(keys) for keys in held)
    in_flight = sum((leases.in_flight("all domains today") for leases in fleet), Spend())
    assert in_flight.usd == THREE_CENTS.usd * calls
    # Never more than the budget; and what is left over is less than a call per worker: each
    # worker was refused only once its own lease could not take another call either.
    assert in_flight.usd <= Decimal("1.0")
    assert Decimal("1.0") - in_flight.usd < THREE_CENTS.usd * (workers + 1), calls
    assert refusals and all("all domains today budget $1.0" in r for r in refusals)


def test_a_recorded_call_moves_from_the_lease_to_the_spend_counted_once(
    budget_project: Callable[[str], Runtime],
) -> None:
    rt = budget_project("day_usd = 10.0")
    leases = rt.budget_leases
    assert leases is not None
    day = _day_budget(rt)
    settings = rt.project.settings
    assert (
        hold(rt.sessions, settings, "t-1", "t-1:1", THREE_CENTS, seconds=300, leases=leases) == ""
    )

    def seen_by_others() -> Spend:
        with rt.sessions() as session:
            return committed(session, day, exclude="someone-else")

    reserved = seen_by_others()
    assert reserved.usd == Decimal("0.96")  # the lease, reserved for this worker's calls
    with transaction(rt.sessions) as session:  # the call is recorded: it cost a cent
        session.add(
            AttemptRow(
                task_id="t-1", number=1, provider="openai", model="m", prompt_hash="", prompt="",
                files={}, input_tokens=40, output_tokens=60, cost_usd=Decimal("0.01"),
                generated_at=database_now(session), budget_lease=leases.owner,
            )
        )  # fmt: skip
    assert seen_by_others() == reserved  # the cent moved from the lease's reserve to the spend
    leases.settle("t-1:1", Spend(usd=Decimal("0.01"), tokens=100))
    assert leases.in_flight(day.scope) == Spend()
    with rt.sessions() as session:  # this worker's own view: its reserve is its to spend
        task = session.get(TaskRow, "t-1")
        assert task is not None
        [limit] = limits_for(session, settings, task, leases=leases)
    assert limit.spent.usd == Decimal("0.01")
    leases.release()
    assert seen_by_others().usd == Decimal("0.01")  # given back: only the spend is left


def test_a_dead_workers_lease_lapses_and_a_stale_lease_is_renewed_before_use(
    budget_project: Callable[[str], Runtime],
) -> None:
    rt = budget_project("day_usd = 0.20")
    settings = rt.project.settings
    now = [0.0]
    dead = BudgetLeases(rt.sessions, owner="dead", calls=32, clock=lambda: now[0])
    alive = BudgetLeases(rt.sessions, owner="alive", calls=32, clock=lambda: now[0])

    def take(leases: BudgetLeases, key: str) -> str:
        return hold(rt.sessions, settings, "t-1", key, THREE_CENTS, seconds=300, leases=leases)

    assert take(dead, "d-1") == "" and take(dead, "d-2") == ""
    with rt.sessions() as session:
        [reserved] = session.scalars(select(BudgetLeaseRow.usd)).all()
    # Its two calls and a quarter of what was left after them: $0.0725.
    assert reserved == Decimal("0.0725")
    taken = 0
    while take(alive, f"a-{taken}") == "":
        taken += 1
    assert taken == 4  # four more calls fit in $0.20 less that; a fifth does not

    with transaction(rt.sessions) as session:  # the dead worker's lease lapses
        session.execute(
            update(BudgetLeaseRow)
            .where(BudgetLeaseRow.owner == "dead")
            .values(expires_at=database_now(session) - timedelta(seconds=1))
        )
    assert take(alive, "a-after") == ""  # its reserve is free again
    assert take(alive, "a-after-2") == ""
    assert "all domains today budget $0.2" in take(alive, "a-after-3")

    # A worker whose lease was last renewed long ago renews before holding against it (the
    # database may have let it lapse): the shared row is taken again.
    before = _shared_row_taken(rt)
    alive.drop("a-after-2")
    assert take(alive, "a-again") == ""  # room in its own lease, within its time
    assert _shared_row_taken(rt) == before
    alive.drop("a-again")
    now[0] += 3600
    assert take(alive, "a-later") == ""
    assert _shared_row_taken(rt) == before + 1


def test_a_task_budget_is_held_per_call_beside_the_leased_day_budget(
    budget_project: Callable[[str], Runtime],
) -> None:
    rt = budget_project("day_usd = 10.0\ntask_usd = 0.07")
    leases = rt.budget_leases
    assert leases is not None
    settings = rt.project.settings

    def take(key: str) -> str:
        return hold(rt.sessions, settings, "t-1", key, THREE_CENTS, seconds=300, leases=leases)

    assert take("call-1") == "" and take("call-2") == ""
    refused = take("call-3")
    assert "task t-1 budget $0.07: $0.0600 spent" in refused
    with rt.sessions() as session:
        holds = session.execute(select(BudgetHoldRow.id, BudgetHoldRow.lease)).all()
        day = committed(session, _day_budget(rt), exclude=leases.owner)
    assert sorted(holds) == [("call-1", leases.owner), ("call-2", leases.owner)]
    assert day == Spend()  # the day budget counts them in the lease, not twice
    assert not leases.holding("call-3")  # refused by the task's budget: nothing kept
