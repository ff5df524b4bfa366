"""The one writer of a task's state: every move goes through ``set_task_state``.

It moves a task only along ``model.TRANSITIONS``, atomically (one conditional UPDATE: of two
callers racing, the second sees the state the first left), stamps ``updated_at`` and, when
the task ends, ``finished_at``, and refuses any other move with a ``StateError`` that names
both states.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from shipyard.errors import NotFound, StateError
from shipyard.model import PENDING_CLOSE, TaskState
from shipyard.store._schema import TaskRow

__all__ = ["set_task_state"]


def set_task_state(
    session: Session,
    task_id: str,
    to: TaskState,
    *,
    expect: Collection[TaskState] = (),
    error: str | None = None,
    refusal: str = "",
    hint: str = "",
    now: datetime | None = None,
) -> None:
    """Move ``task_id`` to ``to`` in ``session``.

    ``expect`` narrows the states the task may be in (e.g. only ``waiting_input`` takes a
    person's code); ``error`` replaces the task's error text when given; ``refusal`` words a
    refusal for people ("not waiting for code") and ``hint`` says what to do instead.
    Setting the state a task is already in is allowed and only stamps the times (a step
    that re-ran after a crash).
    """
    sources = {state for state in TaskState if state is to or state.can_become(to)}
    if expect:
        sources &= set(expect)
    now = now or datetime.now(UTC)
    values: dict[str, Any] = {"state": to.value, "updated_at": now}
    if error is not None:
        values["error"] = error
    if to.terminal:
        pending = [source.value for source, target in PENDING_CLOSE if target is to]
        closed = func.coalesce(TaskRow.finished_at, now)
        values["finished_at"] = (
            case((TaskRow.state.in_(pending), TaskRow.finished_at), else_=closed)
            if pending
            else closed
        )
    moved = session.execute(
        update(TaskRow)
        .where(TaskRow.id == task_id, TaskRow.state.in_([s.value for s in sources]))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount == 1:  # type: ignore[attr-defined]
        return
    current = session.scalar(select(TaskRow.state).where(TaskRow.id == task_id))
    if current is None:
        raise NotFound(f"no task {task_id!r}", hint="see `shipyard list` for task ids")
    wanted = " or ".join(sorted(s.value for s in sources)) or "no state"
    raise StateError(
        f"task {task_id} is {current}, {refusal}"
        if refusal
        else f"task {task_id} is {current}: it cannot become {to.value} (only from {wanted})",
        hint=hint or "see `shipyard show TASK` for how it got there",
        details={"task": task_id, "state": current, "to": to.value},
    )
