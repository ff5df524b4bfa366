"""Recording a task's stages: the step rows and spans ``shipyard show`` and traces read."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from dbos import DBOS
from sqlalchemy import update
from sqlalchemy.orm import Session

from shipyard._crash import crashpoint
from shipyard.errors import ShipyardError
from shipyard.observe import redact
from shipyard.orchestrator._runtime import Runtime
from shipyard.store import StepRow, TaskRow, transaction

__all__ = ["close_steps", "open_steps", "sleep", "stage", "step", "steps_under_way"]

P = ParamSpec("P")
R = TypeVar("R")


class _Steps:
    """The steps this process is running, and whether new ones may start.

    A worker told to stop closes the door: a workflow reaching its next step waits there
    (everything before it is checkpointed), the steps under way finish, and the worker
    leaves; another worker resumes those workflows at the step that waited.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.active = 0
        self.closed = False

    def enter(self) -> None:
        with self.cond:
            while self.closed:
                self.cond.wait()
            self.active += 1

    def wait_open(self) -> None:
        with self.cond:
            while self.closed:
                self.cond.wait()

    def leave(self) -> None:
        with self.cond:
            self.active -= 1
            self.cond.notify_all()


_steps = _Steps()


def step(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A durable step (``DBOS.step``) that waits at the door while the worker is stopping.

    A step DBOS replays from its checkpoint never runs the body, so it never waits.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def gated(*args: P.args, **kwargs: P.kwargs) -> R:
            _steps.enter()
            try:
                return fn(*args, **kwargs)
            finally:
                _steps.leave()

        return DBOS.step(name=name)(gated)

    return decorate


def sleep(seconds: float) -> None:
    """A durable sleep (``DBOS.sleep``) that, like a step, waits at the door while the worker
    is stopping, before it starts and when it ends: a workflow never reaches DBOS after the
    worker let it go (its wake-up time is recorded; a live worker resumes it there)."""
    _steps.wait_open()
    DBOS.sleep(seconds)
    _steps.wait_open()


def close_steps(timeout: float) -> int:
    """Let no new step start; wait up to ``timeout`` s for those under way. How many remain."""
    deadline = time.monotonic() + timeout
    with _steps.cond:
        _steps.closed = True
        while _steps.active and (left := deadline - time.monotonic()) > 0:
            _steps.cond.wait(left)
        return _steps.active


def open_steps() -> None:
    """Let steps start again (a worker launched in a process that stopped one before)."""
    with _steps.cond:
        _steps.closed = False
        _steps.cond.notify_all()


def steps_under_way() -> int:
    with _steps.cond:
        return _steps.active


def _now() -> datetime:
    return datetime.now(UTC)


def _task(session: Session, task_id: str) -> TaskRow:
    row = session.get(TaskRow, task_id)
    if row is None:
        raise ShipyardError(f"task {task_id} vanished from the database")
    return row


@contextmanager
def stage(rt: Runtime, task_id: str, name: str, attempt: int = 0) -> Iterator[dict[str, Any]]:
    """Record one stage's run: started (counting re-runs), then done or failed with a summary.

    The body fills the yielded dict: ``summary`` (one line) and anything else for ``detail``.
    """
    with transaction(rt.sessions) as session:
        started = _now()
        rerun = session.execute(
            update(StepRow)
            .where(StepRow.task_id == task_id, StepRow.stage == name, StepRow.attempt == attempt)
            .values(runs=StepRow.runs + 1, status="running", started_at=started, finished_at=None)
        )
        if not rerun.rowcount:  # type: ignore[attr-defined]
            session.add(
                StepRow(
                    task_id=task_id,
                    stage=name,
                    attempt=attempt,
                    status="running",
                    runs=1,
                    started_at=started,
                    detail={},
                )
            )
    crashpoint(f"{name}.before")
    record: dict[str, Any] = {}
    status = "failed"
    attributes = {"shipyard.stage": name, "shipyard.attempt": attempt}
    label = f"{name} {attempt}" if attempt else name
    with rt.tracing.span(task_id, label, attributes=attributes) as span:
        try:
            yield record
            status = "done"
        except Exception as exc:
            record["summary"] = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            summary = str(record.pop("summary", ""))
            span.set_attribute("shipyard.summary", redact(summary[:500]))
            with transaction(rt.sessions) as session:
                session.execute(
                    update(StepRow)
                    .where(
                        StepRow.task_id == task_id,
                        StepRow.stage == name,
                        StepRow.attempt == attempt,
                    )
                    .values(status=status, finished_at=_now(), summary=summary, detail=record)
                )
    crashpoint(f"{name}.after")
