"""A task's state moves only along the transition table, through one writer, on both
databases: it stamps the times, refuses any other move by name, and two callers racing for
the same move cannot both make it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from shipyard.config import Project
from shipyard.errors import NotFound, StateError
from shipyard.model import PENDING_CLOSE, TRANSITIONS, TaskState
from shipyard.store import TaskRow, make_engine, migrate, session_factory, set_task_state
from shipyard.store import transaction as tx


@pytest.fixture
def sessions(project: Project) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(project.database_url)
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


def _task(sessions: sessionmaker[Session], state: TaskState, ident: str = "t-1") -> str:
    now = datetime.now(UTC)
    with tx(sessions) as session:
        session.add(
            TaskRow(
                id=ident, domain="storefront", job_kind="landing-page", inputs={},
                inputs_hash="", state=state.value, submitted_by="shop-owner",
                submitted_at=now, updated_at=now,
            )
        )  # fmt: skip
    return ident


def _row(sessions: sessionmaker[Session], ident: str = "t-1") -> TaskRow:
    with sessions() as session:
        row = session.get(TaskRow, ident)
        assert row is not None
        return row


def test_the_table_covers_every_state_and_only_a_published_task_moves_after_it_ended() -> None:
    assert set(TRANSITIONS) == set(TaskState)
    for state, reachable in TRANSITIONS.items():
        if state.terminal and state is not TaskState.PUBLISHED:
            assert reachable == frozenset(), state
    assert TRANSITIONS[TaskState.PUBLISHED] == {TaskState.ROLLED_BACK}
    # Every state a task can be in is reachable from where tasks start.
    seen, frontier = {TaskState.QUEUED, TaskState.INVALID}, [TaskState.QUEUED]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(TaskState)


def test_a_task_runs_to_its_end_and_the_end_is_stamped_once(
    sessions: sessionmaker[Session],
) -> None:
    ident = _task(sessions, TaskState.QUEUED)
    for state in (TaskState.RUNNING, TaskState.WAITING_APPROVAL, TaskState.APPROVED):
        with tx(sessions) as session:
            set_task_state(session, ident, state)
        assert _row(sessions).state == state.value
        assert _row(sessions).finished_at is None
    with tx(sessions) as session:
        set_task_state(session, ident, TaskState.PUBLISHED)
    finished = _row(sessions).finished_at
    assert finished is not None
    # A person rolls the release back later: the task changes state, its end stays when it was.
    with tx(sessions) as session:
        set_task_state(session, ident, TaskState.ROLLED_BACK, error="rolled back by ops")
    row = _row(sessions)
    assert (row.state, row.finished_at, row.error) == (
        "rolled_back",
        finished,
        "rolled back by ops",
    )


def test_an_illegal_move_is_refused_by_name_and_changes_nothing(
    sessions: sessionmaker[Session],
) -> None:
    ident = _task(sessions, TaskState.FAILED)
    before = _row(sessions)
    refused = pytest.raises(StateError, match="is failed: it cannot become running")
    with refused as caught, tx(sessions) as session:
        set_task_state(session, ident, TaskState.RUNNING)
    assert caught.value.details == {"task": ident, "state": "failed", "to": "running"}
    after = _row(sessions)
    assert (after.state, after.updated_at) == (before.state, before.updated_at)


def test_setting_the_state_a_task_is_in_is_a_harmless_repeat(
    sessions: sessionmaker[Session],
) -> None:
    ident = _task(sessions, TaskState.RUNNING)
    for _ in range(2):  # a step that re-ran after a crash
        with tx(sessions) as session:
            set_task_state(session, ident, TaskState.RUNNING)
    assert _row(sessions).state == "running"


def test_a_narrowed_move_names_what_the_person_tried(sessions: sessionmaker[Session]) -> None:
    ident = _task(sessions, TaskState.PAUSED)
    refused = pytest.raises(StateError, match=f"task {ident} is paused, not waiting for code")
    with refused, tx(sessions) as session:
        set_task_state(
            session,
            ident,
            TaskState.RESUMING,
            expect=(TaskState.WAITING_INPUT,),
            refusal="not waiting for code",
        )
    assert _row(sessions).state == "paused"


def test_a_rejection_is_not_finished_until_its_workflow_closes_it(
    sessions: sessionmaker[Session],
) -> None:
    assert (TaskState.WAITING_APPROVAL, TaskState.REJECTED) in PENDING_CLOSE
    ident = _task(sessions, TaskState.WAITING_APPROVAL)
    with tx(sessions) as session:
        set_task_state(session, ident, TaskState.REJECTED, expect=(TaskState.WAITING_APPROVAL,))
    # Recorded, not yet closed: a worker that starts must still find it to carry it out.
    assert (_row(sessions).state, _row(sessions).finished_at) == ("rejected", None)
    with tx(sessions) as session:
        set_task_state(session, ident, TaskState.REJECTED)  # the decision workflow closes it
    assert _row(sessions).finished_at is not None


def test_of_two_callers_making_the_same_move_only_one_makes_it(
    sessions: sessionmaker[Session],
) -> None:
    ident = _task(sessions, TaskState.WAITING_INPUT)
    first, second = sessions(), sessions()
    try:
        set_task_state(first, ident, TaskState.RESUMING, expect=(TaskState.WAITING_INPUT,))
        first.commit()
        with pytest.raises(StateError, match="is resuming"):
            set_task_state(second, ident, TaskState.RESUMING, expect=(TaskState.WAITING_INPUT,))
    finally:
        first.close()
        second.close()


def test_a_missing_task_is_not_found(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(NotFound, match="no task 't-nope'"), tx(sessions) as session:
        set_task_state(session, "t-nope", TaskState.RUNNING)
