"""The fleet: every worker process registered, heard from, and replaced when it goes silent.

Each worker is one row in ``workers`` under its DBOS executor id, so the workflows it holds
are the system database's pending workflows under that id. A thread in each worker beats
every ``workers.heartbeat_seconds`` and, on the same beat, looks for workers to take over:

- silent for longer than ``workers.recovery_seconds`` (a lost machine, a SIGKILL elsewhere);
- on this machine, with no such process any more and a missed beat (a crash here);
- stopped with work still pending (a worker that drained and left).

Taking over is a claim (one conditional UPDATE: one taker wins) and then DBOS's recovery,
which puts the worker's pending workflows back on their queues; any worker listening to
those queues resumes each from its last finished step. A worker that finds itself taken
over (it was only slow) stops at once rather than run what others now run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from dbos import DBOS, DBOSClient
from sqlalchemy import or_, select, update

from shipyard import __version__
from shipyard.orchestrator._names import MONITOR_WORKFLOW
from shipyard.orchestrator._queues import system_database
from shipyard.orchestrator._runtime import Runtime
from shipyard.store import WorkerRow, database_now, transaction

__all__ = ["Fleet", "WorkerInfo", "list_workers", "machine_id", "new_worker_id"]

_MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


def machine_id() -> str:
    """This machine's id: process ids are compared only between workers on one machine.

    ``SHIPYARD_MACHINE_ID`` overrides it (containers that share a machine id, or none).
    """
    override = os.environ.get("SHIPYARD_MACHINE_ID", "").strip()
    if override:
        return override[:64]
    for path in _MACHINE_ID_FILES:
        with contextlib.suppress(OSError):
            found = path.read_text().strip()
            if found:
                return found[:64]
    return socket.gethostname()[:64]


def new_worker_id() -> str:
    """A worker id no other worker has had: host, process and a random suffix."""
    return f"{socket.gethostname()[:48]}-{os.getpid()}-{secrets.token_hex(3)}"


def _alive_here(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@dataclass(kw_only=True)
class Fleet:
    """This worker's membership: its row, its heartbeat thread, and its take-overs."""

    rt: Runtime
    worker_id: str
    domains: list[str]
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def join(self) -> None:
        """Register this worker (state ``running``) before DBOS dequeues anything for it."""
        with transaction(self.rt.sessions) as session:
            now = database_now(session)
            session.add(
                WorkerRow(
                    id=self.worker_id,
                    host=socket.gethostname()[:255],
                    machine=machine_id(),
                    pid=os.getpid(),
                    domains=list(self.domains),
                    version=__version__,
                    state="running",
                    started_at=now,
                    heartbeat_at=now,
                )
            )

    def start(self) -> None:
        """Take over what dead workers left, then beat (and keep looking) in a thread."""
        self.take_over()
        self._thread = threading.Thread(target=self._run, name="shipyard-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = self.rt.project.settings.workers.heartbeat_seconds
        while not self._stop.wait(interval):
            try:
                if not self.beat():
                    print(
                        f"worker {self.worker_id}: another worker took this one's tasks over "
                        "(its heartbeat was late); stopping now so no step runs twice",
                        file=sys.stderr,
                        flush=True,
                    )
                    os._exit(3)
                self.take_over()
            except Exception as exc:  # the database away for a moment: try again next beat
                print(f"worker {self.worker_id}: heartbeat failed: {exc}", file=sys.stderr)

    def beat(self, state: str = "running") -> bool:
        """Record that this worker is alive; False when it has been taken over."""
        with transaction(self.rt.sessions) as session:
            now = database_now(session)
            done = session.execute(
                update(WorkerRow)
                .where(WorkerRow.id == self.worker_id, WorkerRow.taken_over_at.is_(None))
                .values(heartbeat_at=now, state=state)
            )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def take_over(self) -> list[tuple[str, int]]:
        """Claim every worker that is gone and put its pending workflows back on the queues.

        Returns (worker id, workflows recovered) for each worker claimed here.
        """
        settings = self.rt.project.settings.workers
        here = machine_id()
        with self.rt.sessions() as session:
            now = database_now(session)
            silent = now - timedelta(seconds=settings.recovery_seconds)
            missed = now - timedelta(seconds=settings.heartbeat_seconds * 1.5)
            rows = session.scalars(
                select(WorkerRow).where(
                    WorkerRow.id != self.worker_id,
                    WorkerRow.taken_over_at.is_(None),
                    or_(
                        WorkerRow.state == "stopped",
                        WorkerRow.heartbeat_at < silent,
                        (WorkerRow.machine == here) & (WorkerRow.heartbeat_at < missed),
                    ),
                )
            ).all()
        gone = [
            row
            for row in rows
            if row.state == "stopped"
            or row.heartbeat_at < silent
            or not _alive_here(row.pid)  # same machine, missed a beat: is it still there?
        ]
        claimed: list[tuple[str, int]] = []
        for row in gone:
            with transaction(self.rt.sessions) as session:
                won = session.execute(
                    update(WorkerRow)
                    .where(WorkerRow.id == row.id, WorkerRow.taken_over_at.is_(None))
                    .values(
                        taken_over_by=self.worker_id,
                        taken_over_at=database_now(session),
                        state="stopped" if row.state == "stopped" else "dead",
                    )
                )
            if not won.rowcount:  # type: ignore[attr-defined]
                continue  # another worker claimed it first
            handles = DBOS._recover_pending_workflows([row.id])
            with transaction(self.rt.sessions) as session:
                session.execute(
                    update(WorkerRow).where(WorkerRow.id == row.id).values(recovered=len(handles))
                )
            if handles or row.state != "stopped":
                print(
                    f"worker {self.worker_id}: took over {row.id} "
                    f"({'stopped' if row.state == 'stopped' else 'silent'}): "
                    f"{len(handles)} workflow(s) back on their queues",
                    file=sys.stderr,
                    flush=True,
                )
            claimed.append((row.id, len(handles)))
        return claimed

    def leave(self) -> None:
        """Stop beating and record the goodbye; live workers take over what is pending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with transaction(self.rt.sessions) as session:
            session.execute(
                update(WorkerRow)
                .where(WorkerRow.id == self.worker_id, WorkerRow.taken_over_at.is_(None))
                .values(state="stopped", stopped_at=database_now(session))
            )


@dataclass(frozen=True, kw_only=True)
class WorkerInfo:
    """One worker as ``shipyard workers`` shows it."""

    id: str
    host: str
    pid: int
    domains: list[str]
    version: str
    state: str
    started_at: datetime
    heartbeat_age: float
    """Seconds since its last heartbeat (by the database's clock)."""
    in_flight: list[str]
    """Tasks whose workflows it holds now."""
    taken_over_by: str
    recovered: int


def list_workers(rt: Runtime, *, include_gone: bool = False, limit: int = 50) -> list[WorkerInfo]:
    """Workers, newest first: the live ones, and with ``include_gone`` those that left."""
    with rt.sessions() as session:
        now = database_now(session)
        query = select(WorkerRow).order_by(WorkerRow.started_at.desc()).limit(limit)
        if not include_gone:
            query = query.where(WorkerRow.taken_over_at.is_(None), WorkerRow.state != "stopped")
        rows = session.scalars(query).all()
    held = _pending_by_executor(rt, [row.id for row in rows])
    return [
        WorkerInfo(
            id=row.id,
            host=row.host,
            pid=row.pid,
            domains=list(row.domains),
            version=row.version,
            state=row.state,
            started_at=row.started_at,
            heartbeat_age=max(0.0, (now - row.heartbeat_at).total_seconds()),
            in_flight=held.get(row.id, []),
            taken_over_by=row.taken_over_by,
            recovered=row.recovered,
        )
        for row in rows
    ]


def _pending_by_executor(rt: Runtime, executor_ids: Sequence[str]) -> dict[str, list[str]]:
    """Task ids of the pending workflows each executor holds (workflow ids start with them;
    a target's monitor is no task's)."""
    if not executor_ids:
        return {}
    client = DBOSClient(system_database_url=system_database(rt.project))
    try:
        pending = client.list_workflows(
            status="PENDING",
            executor_id=list(executor_ids),
            load_input=False,
            load_output=False,
        )
    finally:
        client.destroy()
    held: dict[str, list[str]] = {}
    for workflow in pending:
        tasks = held.setdefault(workflow.executor_id or "", [])
        if workflow.name == MONITOR_WORKFLOW:
            continue
        task_id = workflow.workflow_id.split(".", 1)[0]
        if task_id not in tasks:
            tasks.append(task_id)
    return held
