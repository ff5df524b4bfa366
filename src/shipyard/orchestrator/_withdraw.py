"""Taking a live release back: a person's rollback of a live release, and the monitor's.

Traffic first: the target's ``withdraw`` puts back the version the release replaced (or
unroutes its path if it was the first). Then the records, in one transaction: the release
and its task become ``rolled_back`` with the reason, ``detected_at`` and ``restored_at``
(their difference is the time to recover), the release it had replaced is ``live`` again,
an audit entry says who did it, and a ``release.rolled_back`` notification goes out. Only
the release is undone: effects the job kind made after it are not compensated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import NotFound
from shipyard.model import ReleaseState, TaskState
from shipyard.orchestrator import _govern as govern
from shipyard.orchestrator import _notify as notify
from shipyard.orchestrator._effects import restore_replaced
from shipyard.orchestrator._runtime import Runtime
from shipyard.store import ReleaseRow, TaskRow, set_task_state, transaction

__all__ = ["Withdrawn", "withdraw_live"]


@dataclass(frozen=True, kw_only=True)
class Withdrawn:
    """A live release taken back."""

    task_id: str
    target: str
    version: str
    """The version live on the path now ('' when nothing is)."""
    detected_at: datetime
    """When the rollback was called for."""
    restored_at: datetime
    """When traffic was back on the version before."""

    @property
    def recovered_ms(self) -> float:
        return round((self.restored_at - self.detected_at).total_seconds() * 1000, 1)


def withdraw_live(
    rt: Runtime,
    task_id: str,
    *,
    actor: str,
    reason: str,
    detected: datetime | None = None,
    then: Callable[[Session, Withdrawn], None] | None = None,
) -> Withdrawn | None:
    """Withdraw the live release of ``task_id`` (see the module's docstring); None when it
    is not live on its target any more (nothing changed). ``then`` runs in the records'
    transaction."""
    detected = detected or datetime.now(UTC)
    with rt.sessions() as session:
        target_name = session.scalar(select(ReleaseRow.target).where(ReleaseRow.task_id == task_id))
    if target_name is None:
        raise NotFound(f"task {task_id} has no release record")
    version = rt.target(target_name).withdraw(task_id)
    restored = datetime.now(UTC)
    if version is None:
        return None
    done = Withdrawn(
        task_id=task_id,
        target=target_name,
        version=version,
        detected_at=detected,
        restored_at=restored,
    )
    with transaction(rt.sessions) as session:
        row = session.scalar(select(ReleaseRow).where(ReleaseRow.task_id == task_id))
        if row is None:
            raise NotFound(f"task {task_id} has no release record")
        row.state, row.reason = ReleaseState.ROLLED_BACK.value, reason
        row.detected_at, row.restored_at, row.rolled_back_at = detected, restored, restored
        restore_replaced(session, row)  # what the path held before is what it holds again
        set_task_state(session, task_id, TaskState.ROLLED_BACK, error=reason, now=restored)
        govern.record(
            session,
            actor=actor,
            action="rollback",
            subject=f"target {target_name}",
            decision="done",
            reason=f"{reason}; live version now {version or 'none'}",
            task_id=task_id,
            detail={"recovered_ms": done.recovered_ms},
        )
        task = session.get(TaskRow, task_id)
        if task is not None:
            notify.rolled_back(
                rt,
                session,
                task,
                reason=reason,
                by=actor,
                path=row.path,
                version=row.version,
                live_version=version,
                recovered_ms=done.recovered_ms,
            )
        if then is not None:
            then(session, done)
    return done
