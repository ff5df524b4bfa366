"""Queries: the read side every face shares (the CLI, the REST API, the console, MCP).

Two faces that answer the same question call the same function here, so they cannot drift
apart (a task's spans, its story, the task lists).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shipyard.errors import InputError, NotFound
from shipyard.model import ReleaseState
from shipyard.store import (
    ArtifactRow,
    AttemptRow,
    DecisionRow,
    MemoryRow,
    ProvenanceRow,
    ReleaseRow,
    SpanRow,
    StepRow,
    TaskRow,
    has_prefix,
)

if TYPE_CHECKING:  # the queries that read records alone import no stage (see _records)
    from shipyard.observe import Figure
    from shipyard.orchestrator import BudgetReport, Runtime
    from shipyard.service._records import Records

__all__ = [
    "TaskStory",
    "Trace",
    "budget_report",
    "count_by_state",
    "daily_figures",
    "figures",
    "find_task",
    "list_artifacts",
    "list_tasks",
    "task_story",
    "task_trace",
]


def budget_report(rt: Runtime | Records, *, days: int = 7) -> BudgetReport:
    """Spend against every budget today, and roll-ups per job kind, domain and day."""
    from shipyard.orchestrator import ledger

    with rt.sessions() as session:
        return ledger.budget_report(session, rt.project.settings, days=days)


def find_task(rt: Runtime | Records, ref: str) -> TaskRow:
    """A task by id or unique id prefix."""
    with rt.sessions() as session:
        row = session.get(TaskRow, ref)
        if row is not None:
            return row
        matches = session.scalars(select(TaskRow).where(has_prefix(TaskRow.id, ref)).limit(2)).all()
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(f"no task {ref!r}", hint="see `shipyard list` for task ids")
    raise InputError(f"task id {ref!r} is ambiguous", hint="give more of the id")


def list_tasks(
    rt: Runtime | Records,
    *,
    states: Sequence[str] = (),
    job_kind: str = "",
    batch_id: str = "",
    limit: int = 200,
    offset: int = 0,
    newest_first: bool = False,
) -> list[TaskRow]:
    """Tasks in submission order (a batch in its rows' order), filtered, one page of them."""
    order = (TaskRow.submitted_at, TaskRow.source, TaskRow.id)
    query = select(TaskRow).order_by(*(c.desc() for c in order) if newest_first else order)
    if states:
        query = query.where(TaskRow.state.in_(states))
    if job_kind:
        query = query.where(TaskRow.job_kind == job_kind)
    if batch_id:
        query = query.where(TaskRow.batch_id == batch_id)
    with rt.sessions() as session:
        return list(session.scalars(query.offset(offset).limit(limit)).all())


def count_by_state(rt: Runtime | Records) -> dict[str, int]:
    with rt.sessions() as session:
        rows = session.execute(select(TaskRow.state, func.count()).group_by(TaskRow.state)).all()
    return {state: count for state, count in rows}


@dataclass(frozen=True, kw_only=True)
class TaskStory:
    """Everything recorded about one task, for ``shipyard show``."""

    task: TaskRow
    steps: list[StepRow]
    attempts: list[AttemptRow]
    decisions: list[DecisionRow]
    provenance: ProvenanceRow | None
    release: ReleaseRow | None
    memories: dict[str, MemoryRow] = field(default_factory=dict)
    """The recalled memory items named by the attempts, by their ``mem-N`` id."""


def task_story(rt: Runtime | Records, ref: str) -> TaskStory:
    task = find_task(rt, ref)
    with rt.sessions() as session:
        return TaskStory(
            task=task,
            steps=list(
                session.scalars(
                    select(StepRow).where(StepRow.task_id == task.id).order_by(StepRow.id)
                ).all()
            ),
            attempts=list(
                session.scalars(
                    select(AttemptRow)
                    .where(AttemptRow.task_id == task.id)
                    .order_by(AttemptRow.number)
                ).all()
            ),
            decisions=list(
                session.scalars(
                    select(DecisionRow)
                    .where(DecisionRow.task_id == task.id)
                    .order_by(DecisionRow.id)
                ).all()
            ),
            provenance=session.get(ProvenanceRow, task.id),
            release=session.scalar(select(ReleaseRow).where(ReleaseRow.task_id == task.id)),
            memories=_recalled(session, task.id),
        )


def _recalled(session: Session, task_id: str) -> dict[str, MemoryRow]:
    named = {
        str(ident)
        for recalled in session.scalars(
            select(AttemptRow.recalled).where(AttemptRow.task_id == task_id)
        ).all()
        for ident in recalled or []
    }
    ids = [int(n.removeprefix("mem-")) for n in named if n.removeprefix("mem-").isdigit()]
    rows = session.scalars(select(MemoryRow).where(MemoryRow.id.in_(ids))).all() if ids else []
    return {f"mem-{row.id}": row for row in rows}


def list_artifacts(
    rt: Runtime | Records, *, job_kind: str = ""
) -> list[tuple[ArtifactRow, list[str]]]:
    """Artifact versions (newest first) with the targets each is live on."""
    with rt.sessions() as session:
        query = select(ArtifactRow).order_by(ArtifactRow.created_at.desc())
        if job_kind:
            query = query.where(ArtifactRow.job_kind == job_kind)
        artifacts = session.scalars(query).all()
        live = session.execute(
            select(ReleaseRow.artifact_id, ReleaseRow.target).where(
                ReleaseRow.state == ReleaseState.LIVE
            )
        ).all()
    where: dict[str, list[str]] = {}
    for artifact_id, target in live:
        where.setdefault(artifact_id, []).append(target)
    return [(a, sorted(set(where.get(a.id, [])))) for a in artifacts]


@dataclass(frozen=True, kw_only=True)
class Trace:
    """A task's spans, each once, and what each attempt cost (for ``shipyard trace``, the
    API's trace and the console's waterfall alike)."""

    task: TaskRow
    spans: list[SpanRow]
    cost: dict[int, Decimal]
    """Attempt number -> its price in USD."""


def task_trace(rt: Runtime, ref: str) -> Trace:
    task = find_task(rt, ref)
    from shipyard.observe import task_spans

    rt.tracing.flush()  # spans still in this process's exporter belong in the answer
    with rt.sessions() as session:
        spans = task_spans(session, task.id)
        cost = {
            a.number: a.cost_usd
            for a in session.scalars(select(AttemptRow).where(AttemptRow.task_id == task.id))
        }
    return Trace(task=task, spans=spans, cost=cost)


def figures(
    rt: Runtime | Records, *, since: datetime, until: datetime, job_kind: str = "", domain: str = ""
) -> list[Figure]:
    """The operating figures of the tasks submitted in [since, until)."""
    from shipyard.observe import operating_figures

    with rt.sessions() as session:
        return operating_figures(
            session,
            since=since,
            until=until,
            job_kind=job_kind,
            domain=domain,
            sla_minutes=rt.project.settings.observe.sla_minutes,
        )


def daily_figures(
    rt: Runtime | Records, *, days: int, names: Sequence[str]
) -> dict[str, list[tuple[date, float | None]]]:
    """The named figures day by day (UTC) over the last ``days`` days, oldest first."""
    from shipyard.observe import operating_figures

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    series: dict[str, list[tuple[date, float | None]]] = {name: [] for name in names}
    with rt.sessions() as session:
        for back in range(days - 1, -1, -1):
            start = today - timedelta(days=back)
            for f in operating_figures(
                session,
                since=start,
                until=start + timedelta(days=1),
                sla_minutes=rt.project.settings.observe.sla_minutes,
            ):
                if f.name in series:
                    series[f.name].append((start.date(), f.value))
    return series
