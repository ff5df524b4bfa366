"""Running a replay: the candidate runtime, the selection, the cost cap, the record."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from shipyard.config import Project, load_settings
from shipyard.errors import ConfigError, InputError, StateError
from shipyard.jobs import validate_inputs
from shipyard.replay._report import Thresholds, regressions, totals
from shipyard.replay._run import (
    STEPS,
    Selection,
    Spending,
    estimate_cost,
    policy_hash,
    recalled_for,
    replay_task,
    select_tasks,
)
from shipyard.service import Runtime
from shipyard.store import ReplayRunRow, TaskRow, transaction

__all__ = ["Candidate", "candidate_runtime", "run_replay"]


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """What is tried: another shipyard.toml (its job kinds, templates, checks, tiers and
    policies), other policy files, or both (the files replace the config's own)."""

    config: Path | None = None
    policy_files: tuple[Path, ...] = ()


def candidate_runtime(live: Runtime, candidate: Candidate) -> Runtime:
    """A runtime for the candidate that reads the live records (and never migrates them)."""
    project: Project = live.project
    if candidate.config is not None:
        path = candidate.config.resolve()
        if not path.is_file():
            raise ConfigError(
                f"candidate config {candidate.config} not found",
                hint="pass a shipyard.toml (e.g. a copy of the project with the change in it)",
            )
        project = Project(
            root=path.parent, settings=load_settings(path), database_url=live.project.database_url
        )
    if candidate.policy_files:
        for path in candidate.policy_files:
            if not path.is_file():
                raise ConfigError(f"candidate policy {path} not found", hint="check the path")
        settings = project.settings
        policy = settings.policy.model_copy(
            update={"files": [str(p.resolve()) for p in candidate.policy_files]}
        )
        project = replace(project, settings=settings.model_copy(update={"policy": policy}))
    return Runtime.open(project, upgrade_schema=False, providers=dict(live.provider_overrides))


def run_replay(
    live: Runtime,
    candidate: Candidate,
    selection: Selection,
    *,
    from_step: str = "verify",
    max_usd: Decimal | None = None,
    thresholds: Thresholds | None = None,
    actor: str,
) -> dict[str, Any]:
    """Replay the selected tasks under the candidate; record the run; return its report."""
    if from_step not in STEPS:
        raise InputError(f"unknown step {from_step!r}", hint=f"one of: {', '.join(STEPS)}")
    rt = candidate_runtime(live, candidate)
    try:
        with live.sessions() as session:
            tasks = select_tasks(session, selection)
            if not tasks:
                raise StateError(
                    "no recorded task matches the selection",
                    hint="widen it (--since, --job, --state) or name tasks",
                )
            spending = Spending(cap=max_usd)
            estimate = Decimal(0)
            if from_step == "generate":
                estimate = _estimate(rt, session, tasks)
                if max_usd is None and estimate > 0:
                    raise InputError(
                        f"regenerating {len(tasks)} task(s) may cost up to ${estimate:.4f}",
                        hint="pass --max-usd with what you accept to spend (the replay stops "
                        "there)",
                    )
            results = [
                replay_task(
                    rt,
                    session,
                    t,
                    step=from_step,  # type: ignore[arg-type]  # checked against STEPS above
                    live=live.policies,
                    spending=spending,
                )
                for t in tasks
            ]
        report_tasks = [r.to_dict() for r in results]
        summary = totals(report_tasks)
        report: dict[str, Any] = {
            "id": f"r-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}",
            "created_at": datetime.now(UTC).isoformat(),
            "actor": actor,
            "from_step": from_step,
            "selection": {
                "tasks": list(selection.tasks),
                "since": selection.since.isoformat() if selection.since else None,
                "job_kind": selection.job_kind,
                "domain": selection.domain,
                "states": list(selection.states),
            },
            "candidate": {
                "config": str(candidate.config or live.project.config_path),
                "policy_files": [str(p) for p in rt.project.policy_files],
                "policy_hash": policy_hash(_policy_set(rt)),
            },
            "baseline": {
                "config": str(live.project.config_path),
                "policy_files": [str(p) for p in live.project.policy_files],
                "policy_hash": policy_hash(_policy_set(live)),
            },
            "summary": summary,
            "cost_estimate_usd": float(estimate),
            "spent_usd": float(spending.spent),
            "regressions": regressions(summary, thresholds or Thresholds()),
            "tasks": report_tasks,
        }
    finally:
        rt.close()
    with transaction(live.sessions) as session:
        session.add(
            ReplayRunRow(
                id=report["id"],
                created_at=datetime.now(UTC),
                actor=actor,
                from_step=from_step,
                candidate=report["candidate"],
                baseline=report["baseline"],
                summary=summary,
                report=report,
            )
        )
    return report


def _estimate(rt: Runtime, session: Session, tasks: Sequence[TaskRow]) -> Decimal:
    """The most regenerating the tasks can cost: every attempt at its worst case."""
    total = Decimal(0)
    known = {k.name for k in rt.jobs}
    for task in tasks:
        if task.job_kind not in known:
            continue
        kind = rt.jobs.get(task.job_kind)
        try:
            validate_inputs(kind, dict(task.inputs), where=f"task {task.id}")
        except InputError:
            continue  # reported as newly invalid, and never generated
        recalled = recalled_for(session, task.id)
        total += estimate_cost(rt, kind, dict(task.inputs), recalled) * kind.max_attempts
    return total


def _policy_set(rt: Runtime) -> Sequence[Path]:
    return rt.policies.files
