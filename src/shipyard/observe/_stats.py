"""The operating figures: whether the system earns its keep, computed from its records.

For a time window (tasks submitted in it) and optionally one job kind or domain:

- end-to-end latency p50/p95 (submit to the task's end, waits for people included);
- success rate: tasks released (or done, for kinds without a target) over tasks submitted;
- first-attempt pass rate: tasks whose first generation passed its checks, over tasks checked;
- mean time to recover: from a release that was rolled back, the time until the rollback;
- rollback time to recover (p50): from the failing signal (a canary verdict, or a person's
  rollback) to all traffic back on the baseline;
- incidents, and their mean time to recover: anomalies a monitor found on a live path
  (detected in the window, on releases of the job kind or domain when one is given), and
  from detection to resolution (the path recovered, the monitor's rollback restored
  traffic, or a person closed it) over those resolved;
- safety-check false positives: artifacts the checks flagged (a warning) that a person
  approved anyway, over flagged artifacts a person decided on;
- safety-check false negatives: releases rolled back although their checks passed, over
  releases;
- per-task cost: mean and p95 of model spend;
- SLA adherence: released tasks that ended within their job kind's ``[observe]
  sla_minutes``, over released tasks that have a target (a task that failed fast is not
  on time);
- audit completeness: effects (tool calls that acted) with a matching audit entry that
  carries a policy decision, over effects.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import InputError
from shipyard.model import CheckReport, ReleaseState
from shipyard.store import (
    AttemptRow,
    AuditRow,
    DecisionRow,
    IncidentRow,
    ReleaseRow,
    TaskRow,
    ToolCallRow,
)

__all__ = ["Figure", "operating_figures"]

_RELEASED = {"published", "done", "rolled_back"}
_ENDED = {
    "published",
    "done",
    "failed",
    "rejected",
    "denied",
    "error",
    "compensated",
    "rolled_back",
}


@dataclass(frozen=True, kw_only=True)
class Figure:
    name: str
    value: float | None
    """None when the window holds nothing to compute it from."""
    unit: str
    basis: str
    """What it was computed from (counts), so a reader can judge it."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit, "basis": self.basis}


def _took(task: TaskRow) -> float:
    """Seconds from submit to the task's end."""
    end = task.finished_at or task.updated_at
    return (end - task.submitted_at).total_seconds()


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


@dataclass(frozen=True, kw_only=True)
class _Records:
    """What the figures are computed from: the window's valid tasks and their records."""

    tasks: list[TaskRow]
    attempts: dict[str, list[AttemptRow]]
    """Task id -> its attempts, as stored."""
    releases: Sequence[ReleaseRow]
    decisions: Sequence[DecisionRow]
    """People's approvals and rejections."""

    @property
    def ended(self) -> list[TaskRow]:
        return [t for t in self.tasks if t.state in _ENDED and t.finished_at is not None]

    @property
    def rolled_back(self) -> list[ReleaseRow]:
        return [
            r
            for r in self.releases
            if r.state == ReleaseState.ROLLED_BACK and r.rolled_back_at is not None
        ]


def operating_figures(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    job_kind: str = "",
    domain: str = "",
    sla_minutes: dict[str, float] | None = None,
) -> list[Figure]:
    """The figures of the module docstring, in that order, for tasks submitted in the window."""
    records = _records(session, since=since, until=until, job_kind=job_kind, domain=domain)
    return [
        *_volume_and_latency(records),
        _success_rate(records),
        _first_attempt_pass_rate(records),
        *_time_to_recover(records),
        *_incidents(session, since=since, until=until, job_kind=job_kind, domain=domain),
        _false_positive_rate(records),
        _false_negative_rate(records),
        *_cost_per_task(records),
        _sla_adherence(records, sla_minutes or {}),
        _audit_completeness(session, [t.id for t in records.tasks]),
    ]


def _records(
    session: Session, *, since: datetime, until: datetime, job_kind: str, domain: str
) -> _Records:
    query = select(TaskRow).where(TaskRow.submitted_at >= since, TaskRow.submitted_at < until)
    if job_kind:
        query = query.where(TaskRow.job_kind == job_kind)
    if domain:
        query = query.where(TaskRow.domain == domain)
    tasks = [t for t in session.scalars(query).all() if t.state != "invalid"]
    ids = [t.id for t in tasks]
    if not ids:
        return _Records(tasks=tasks, attempts={}, releases=[], decisions=[])
    by_task: dict[str, list[AttemptRow]] = {}
    for a in session.scalars(select(AttemptRow).where(AttemptRow.task_id.in_(ids))).all():
        by_task.setdefault(a.task_id, []).append(a)
    releases = session.scalars(select(ReleaseRow).where(ReleaseRow.task_id.in_(ids))).all()
    decisions = session.scalars(
        select(DecisionRow).where(
            DecisionRow.task_id.in_(ids), DecisionRow.decision.in_(("approved", "rejected"))
        )
    ).all()
    return _Records(tasks=tasks, attempts=by_task, releases=releases, decisions=decisions)


def _figure(name: str, value: float | None, unit: str, basis: str) -> Figure:
    """A figure, its parts in the order people read them in the table."""
    return Figure(name=name, value=value, unit=unit, basis=basis)


def _volume_and_latency(records: _Records) -> list[Figure]:
    n = len(records.tasks)
    latencies = sorted(_took(t) for t in records.ended)
    ended = f"{len(latencies)} ended"
    return [
        _figure("tasks submitted", float(n), "tasks", f"{n} valid task(s) in the window"),
        _figure("end-to-end latency p50", _percentile(latencies, 50), "s", ended),
        _figure("end-to-end latency p95", _percentile(latencies, 95), "s", ended),
    ]


def _success_rate(records: _Records) -> Figure:
    n = len(records.tasks)
    released = [t for t in records.tasks if t.state in _RELEASED]
    return _figure(
        "success rate", _ratio(len(released), n), "ratio", f"{len(released)} released of {n}"
    )


def _first_attempt_pass_rate(records: _Records) -> Figure:
    checked = [
        sorted(v, key=lambda a: a.number)
        for v in records.attempts.values()
        if any(a.passed is not None for a in v)
    ]
    first_pass = sum(1 for v in checked if v[0].passed is True)
    return _figure(
        "first-attempt pass rate",
        _ratio(first_pass, len(checked)),
        "ratio",
        f"{first_pass} of {len(checked)} checked task(s)",
    )


def _time_to_recover(records: _Records) -> list[Figure]:
    """Mean time from release to rollback, and the p50 from failing signal to baseline."""
    rolled = records.rolled_back
    recover = [
        (r.rolled_back_at - r.released_at).total_seconds()  # type: ignore[operator]
        for r in rolled
    ]
    switched = sorted(
        (r.restored_at - r.detected_at).total_seconds()
        for r in rolled
        if r.restored_at is not None and r.detected_at is not None
    )
    mttr = statistics.fmean(recover) if recover else None
    return [
        _figure("mean time to recover", mttr, "s", f"{len(recover)} rollback(s)"),
        _figure(
            "rollback time to recover p50",
            _percentile(switched, 50),
            "s",
            f"{len(switched)} rollback(s) with a recorded signal",
        ),
    ]


def _incidents(
    session: Session, *, since: datetime, until: datetime, job_kind: str, domain: str
) -> list[Figure]:
    """Incidents detected in the window, and the mean time to recover of those resolved."""
    query = (
        select(IncidentRow)
        .join(TaskRow, TaskRow.id == IncidentRow.task_id)
        .where(IncidentRow.detected_at >= since, IncidentRow.detected_at < until)
    )
    if job_kind:
        query = query.where(TaskRow.job_kind == job_kind)
    if domain:
        query = query.where(TaskRow.domain == domain)
    found = session.scalars(query).all()
    recovered = [
        (i.resolved_at - i.detected_at).total_seconds() for i in found if i.resolved_at is not None
    ]
    still_open = len(found) - len(recovered)
    return [
        _figure(
            "incidents",
            float(len(found)),
            "incidents",
            f"{len(found)} detected by monitors, {still_open} open",
        ),
        _figure(
            "incident mean time to recover",
            statistics.fmean(recovered) if recovered else None,
            "s",
            f"{len(recovered)} resolved incident(s)",
        ),
    ]


def _false_positive_rate(records: _Records) -> Figure:
    """Of the artifacts whose checks warned and a person decided on, how many were approved."""
    decided: dict[str, str] = {}
    for d in records.decisions:
        decided.setdefault(d.task_id, d.decision)
    flagged = []
    for task_id, rows in records.attempts.items():
        passing = [a for a in rows if a.passed]
        if passing and task_id in decided:
            report = CheckReport.from_dict(passing[-1].report or {})
            if any(f.severity == "warning" for f in report.findings):
                flagged.append(task_id)
    approved = sum(1 for t in flagged if decided[t] == "approved")
    return _figure(
        "safety-check false positive rate",
        _ratio(approved, len(flagged)),
        "ratio",
        f"{approved} of {len(flagged)} flagged artifact(s) approved by a person",
    )


def _false_negative_rate(records: _Records) -> Figure:
    rolled, releases = len(records.rolled_back), len(records.releases)
    return _figure(
        "safety-check false negative rate",
        _ratio(rolled, releases),
        "ratio",
        f"{rolled} of {releases} release(s) rolled back after passing checks",
    )


def _cost_per_task(records: _Records) -> list[Figure]:
    costs = sorted(
        float(sum((a.cost_usd for a in records.attempts.get(t.id, [])), Decimal(0)))
        for t in records.tasks
    )
    mean_cost = statistics.fmean(costs) if costs else None
    return [
        _figure("cost per task (mean)", mean_cost, "USD", f"{len(costs)} task(s)"),
        _figure("cost per task p95", _percentile(costs, 95), "USD", f"{len(costs)} task(s)"),
    ]


def _sla_adherence(records: _Records, sla_minutes: dict[str, float]) -> Figure:
    with_target = [t for t in records.ended if t.job_kind in sla_minutes and t.state in _RELEASED]
    on_time = len([t for t in with_target if _took(t) <= sla_minutes[t.job_kind] * 60])
    return _figure(
        "SLA adherence",
        _ratio(on_time, len(with_target)),
        "ratio",
        f"{on_time} of {len(with_target)} released task(s) with a target",
    )


def _audit_completeness(session: Session, ids: list[str]) -> Figure:
    """Effects (tool calls that acted) with an audit entry carrying a policy decision."""
    effects = (
        session.scalars(
            select(ToolCallRow).where(
                ToolCallRow.task_id.in_(ids),
                ToolCallRow.status.in_(("done", "compensated", "irreversible", "undo_failed")),
            )
        ).all()
        if ids
        else []
    )
    audited_keys = (
        {
            str((row.detail or {}).get("key"))
            for row in session.scalars(
                select(AuditRow).where(
                    AuditRow.task_id.in_(ids),
                    AuditRow.action == "call_tool",
                    AuditRow.decision == "done",
                )
            ).all()
            if "allowed by" in row.reason
        }
        if ids
        else set()
    )
    complete = sum(1 for e in effects if e.key in audited_keys)
    return _figure(
        "audit completeness",
        _ratio(complete, len(effects)),
        "ratio",
        f"{complete} of {len(effects)} effect(s) audited with a policy decision",
    )


_SPAN = re.compile(r"^(\d+)([hdw])$")


def parse_window(text: str) -> timedelta:
    """A window ending now, as people write it: ``24h``, ``7d``, ``4w``."""
    found = _SPAN.match(text.strip())
    if not found:
        raise InputError(
            f"--since {text!r}: expected a number and h, d or w (e.g. 24h, 7d, 4w)",
            hint="the window ends now",
        )
    number, unit = int(found.group(1)), found.group(2)
    return {
        "h": timedelta(hours=number),
        "d": timedelta(days=number),
        "w": timedelta(weeks=number),
    }[unit]
