"""Enqueueing work on the domains' DBOS queues, and the DBOS settings every process shares.

Every change a person or a submitter makes is recorded first and enqueued second; if a
process dies in between, ``enqueue_pending`` (called by every worker at launch) enqueues what
the records say is pending. Workflow ids derive from the records, so enqueueing twice
attaches to the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dbos import DBOS, DBOSClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shipyard.config import Project
from shipyard.errors import StoreError
from shipyard.model import DecisionKind, TaskState
from shipyard.orchestrator._names import (
    DECISION_WORKFLOW,
    RESUME_WORKFLOW,
    WORKFLOW_NAME,
    WORKFLOW_VERSION,
    decision_workflow_id,
    resume_workflow_id,
)
from shipyard.store import DecisionRow, TaskRow, use_wal

__all__ = [
    "RESUMPTIONS",
    "dbos_config",
    "enqueue_pending",
    "queue_name",
    "queue_settings",
    "system_database",
]

RESUMPTIONS = (DecisionKind.PROVIDED.value, DecisionKind.RESUMED.value)
"""Decisions that start a resume workflow (each one numbers the next)."""


def queue_name(domain: str) -> str:
    return f"shipyard-{domain}"


def dbos_config(project: Project, *, executor_id: str | None = None) -> dict[str, Any]:
    """DBOS settings for this project: its system database, Shipyard's version as app version."""
    config: dict[str, Any] = {
        "name": "shipyard",
        "application_version": WORKFLOW_VERSION,
        "log_level": "WARNING",
        "notification_listener_polling_interval_sec": 0.2,
    }
    if executor_id:
        config["executor_id"] = executor_id
    config["system_database_url"] = system_database(project)
    return config


def system_database(project: Project) -> str:
    """DBOS's database URL; on SQLite its connections are set to WAL (see ``use_wal``)."""
    if project.is_sqlite:
        use_wal(project.state_dir / "workflows.sqlite")
    return project.system_database_url


def _client(project: Project) -> DBOSClient:
    DBOS.migrate(system_database(project))
    return DBOSClient(system_database_url=system_database(project))


def queue_settings(project: Project, domain: str) -> dict[str, Any]:
    """A domain queue's limits: tasks at once per worker, and (only when the domain sets them)
    tasks at once across all workers and tasks per minute.

    Either queue-wide limit changes how DBOS claims work on PostgreSQL: with one, each
    worker's dequeue counts the queue's running workflows and claims rows ``FOR UPDATE
    NOWAIT`` in a REPEATABLE READ transaction, so workers polling at once fail each other's
    claims ("could not obtain lock on row", "could not serialize access") and back off,
    doubling their polling interval. Without one, a claim is ``FOR UPDATE SKIP LOCKED`` under
    READ COMMITTED and workers never wait on each other. So ``worker_concurrency`` times the
    workers is the usual cap, and ``concurrency`` is left unset unless something downstream
    needs a bound across workers.
    """
    settings = project.settings.domains[domain]
    found: dict[str, Any] = {
        "worker_concurrency": settings.worker_concurrency,
        "polling_interval_sec": 0.2,
    }
    if settings.concurrency is not None:
        found["global_concurrency"] = settings.concurrency
    if settings.tasks_per_minute is not None:
        found["limiter"] = {"limit": settings.tasks_per_minute, "period": 60.0}
    return found


def _register_queues(client: DBOSClient, project: Project) -> None:
    for domain in project.settings.domains:
        client.register_queue(queue_name(domain), **queue_settings(project, domain))


def _enqueue(project: Project, domain: str, runs: Sequence[tuple[str, str, str]]) -> None:
    """Enqueue (workflow name, workflow id, task id) runs on the domain's queue."""
    try:
        client = _client(project)
    except Exception as exc:  # DBOS or the database driver: translate at the boundary
        raise _not_enqueued(exc) from exc
    try:
        _register_queues(client, project)
        for workflow, workflow_id, task_id in runs:
            # Workflow ids derive from the task id: enqueueing twice attaches to the same run.
            client.enqueue(
                {
                    "workflow_name": workflow,
                    "queue_name": queue_name(domain),
                    "workflow_id": workflow_id,
                    "app_version": WORKFLOW_VERSION,
                },
                task_id,
            )
    except Exception as exc:
        raise _not_enqueued(exc) from exc
    finally:
        client.destroy()


def _not_enqueued(exc: Exception) -> StoreError:
    return StoreError(
        f"the work is recorded but could not be enqueued: {type(exc).__name__}: {exc}",
        hint="nothing is lost: the next `shipyard worker` to start enqueues it",
    )


def enqueue_pending(
    project: Project, sessions: sessionmaker[Session], task_ids: Sequence[str] = ()
) -> int:
    """Enqueue the workflow each pending task needs (all pending tasks when none is named).

    A queued task needs its task workflow; a decided, unfinished one its decision workflow;
    a resuming one (a person supplied its code, or resumed it from a pause) its next resume
    workflow. Every such change is recorded first and enqueued second, so if a process dies
    in between, a worker calls this at launch and the work goes on all the same. Workflow
    ids derive from the records: enqueueing one that exists attaches to it, never
    duplicates it.
    """
    decided = (TaskState.APPROVED.value, TaskState.REJECTED.value)
    resuming = TaskState.RESUMING.value
    with sessions() as session:
        query = select(TaskRow.id, TaskRow.domain, TaskRow.state).where(
            TaskRow.finished_at.is_(None),
            TaskRow.state.in_((TaskState.QUEUED.value, resuming, *decided)),
        )
        if task_ids:
            query = query.where(TaskRow.id.in_(task_ids))
        pending = session.execute(query).all()
        resumptions = dict(
            session.execute(
                select(DecisionRow.task_id, func.count())
                .where(
                    DecisionRow.task_id.in_([t for t, _, state in pending if state == resuming]),
                    DecisionRow.decision.in_(RESUMPTIONS),
                )
                .group_by(DecisionRow.task_id)
            ).all()
        )
    by_domain: dict[str, list[tuple[str, str, str]]] = {}
    for task_id, domain, state in pending:
        if state in decided:
            run = (DECISION_WORKFLOW, decision_workflow_id(task_id), task_id)
        elif state == resuming:
            workflow_id = resume_workflow_id(task_id, int(resumptions.get(task_id, 0)))
            run = (RESUME_WORKFLOW, workflow_id, task_id)
        else:
            run = (WORKFLOW_NAME, task_id, task_id)
        by_domain.setdefault(domain, []).append(run)
    for domain, runs in by_domain.items():
        _enqueue(project, domain, runs)
    return len(pending)
