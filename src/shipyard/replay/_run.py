"""Replay: recorded tasks re-run under a candidate configuration, in simulation.

A replay reads the live records (tasks, attempts, decisions, the audit log's gate contexts,
step timings) and writes none of them: each selected task's recorded output (or, with
``regenerate``, new output from the candidate's generator) goes through the candidate's
checks in the sandbox, the candidate's gate and the candidate's ``call_tool`` policy, and
nothing leaves Shipyard: no target is deployed to, no tool is called, no memory is written,
no budget is charged. The only record a replay writes is its own (``replay_runs``).

Where a run starts (``from_step``):

- ``generate``: the candidate writes the code again (its templates, its tiers), with the
  repair loop, up to the job kind's ``max_attempts``; the cost is estimated first and capped;
- ``verify``: the recorded code, checked by the candidate's checks, then gated;
- ``gate``: the recorded code and check report, gated by the candidate's policies.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.artifacts import file_diff
from shipyard.checks import run_checks
from shipyard.errors import InputError, NotFound, ShipyardError
from shipyard.generate import GenerationRequest, price_call, render_prompt
from shipyard.jobs import JobKind, validate_inputs
from shipyard.model import CheckReport, Finding, GateOutcome
from shipyard.orchestrator import govern
from shipyard.policy import Policies, entities
from shipyard.service import Runtime
from shipyard.store import AttemptRow, AuditRow, DecisionRow, StepRow, TaskRow

__all__ = [
    "REGRESSIONS",
    "STEPS",
    "Outcome",
    "Selection",
    "Spending",
    "TaskReplay",
    "content_hash",
    "estimate_cost",
    "policy_hash",
    "recalled_for",
    "replay_task",
    "select_tasks",
]

STEPS = ("generate", "verify", "gate")
REGRESSIONS = frozenset(
    {
        "newly failing",
        "newly denied",
        "tool newly denied",
        "newly invalid",
        "job kind gone",
        "target gone",
        "generation failed",
    }
)
"""Changes that make a task a regression."""
Step = Literal["generate", "verify", "gate"]


def policy_hash(files: Sequence[Path]) -> str:
    """The version of a policy set: a digest of its files' contents, in order (not their
    names, so a candidate file tried from anywhere has the version it will have in place)."""
    return content_hash([path.read_bytes() for path in files])


def content_hash(contents: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for data in contents:
        digest.update(len(data).to_bytes(8, "big") + data)
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which recorded tasks to replay (all filters together; ``tasks`` alone if given)."""

    tasks: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    job_kind: str = ""
    domain: str = ""
    states: tuple[str, ...] = ()
    limit: int = 200


def select_tasks(session: Session, selection: Selection) -> list[TaskRow]:
    """The recorded tasks a selection names, oldest first; refused tasks are never replayed."""
    query = select(TaskRow).where(TaskRow.state != "invalid")
    if selection.tasks:
        found = []
        for ref in selection.tasks:
            exact = session.scalar(query.where(TaskRow.id == ref))
            rows = (
                [exact]
                if exact is not None
                else session.scalars(
                    query.where(TaskRow.id.startswith(ref, autoescape=True)).limit(2)
                ).all()
            )
            if not rows:
                raise NotFound(
                    f"no recorded task {ref} that can be replayed",
                    hint="`shipyard list` shows them (tasks refused at the door are not replayed)",
                )
            if len(rows) > 1:
                raise InputError(f"{ref!r} names more than one task", hint="give more of the id")
            found.append(rows[0])
        return found
    if selection.since is not None:
        query = query.where(TaskRow.submitted_at >= selection.since)
    if selection.until is not None:
        query = query.where(TaskRow.submitted_at < selection.until)
    if selection.job_kind:
        query = query.where(TaskRow.job_kind == selection.job_kind)
    if selection.domain:
        query = query.where(TaskRow.domain == selection.domain)
    if selection.states:
        query = query.where(TaskRow.state.in_(selection.states))
    newest = session.scalars(query.order_by(TaskRow.submitted_at.desc()).limit(selection.limit))
    return list(reversed(list(newest)))


@dataclass(kw_only=True)
class Outcome:
    """One side (recorded, or replayed) of a task."""

    passed: bool | None
    """Did the code pass its checks (None: it never got that far)."""
    failing: list[str] = field(default_factory=list)
    """Rules that failed (``html.img-alt`` ...)."""
    gate: str = "-"
    """auto, needs_approval, deny, or '-' (not gated)."""
    approvals: int = 0
    risk: str = ""
    attempts: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    """Time spent generating and checking (people's waits excluded)."""
    files: dict[str, str] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)
    """Tool calls the release would make, with the policy's verdict (replay only)."""
    note: str = ""


@dataclass(kw_only=True)
class TaskReplay:
    task_id: str
    job_kind: str
    input_key: str
    before: Outcome
    after: Outcome
    changes: list[str] = field(default_factory=list)
    """newly failing, newly passing, newly denied, newly allowed, newly needs approval,
    newly auto, code changed, cost up, cost down, and the regressions (REGRESSIONS)."""
    diff: str = ""

    @property
    def regression(self) -> bool:
        return bool(REGRESSIONS & set(self.changes))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["regression"] = self.regression
        return data


def _before(session: Session, task: TaskRow) -> Outcome:
    attempts = session.scalars(
        select(AttemptRow).where(AttemptRow.task_id == task.id).order_by(AttemptRow.number)
    ).all()
    checked = [a for a in attempts if a.passed is not None]
    last = next((a for a in reversed(checked) if a.passed), checked[-1] if checked else None)
    report = CheckReport.from_dict(last.report or {}) if last is not None else None
    decision = session.scalar(
        select(DecisionRow)
        .where(DecisionRow.task_id == task.id, DecisionRow.decision.startswith("policy:"))
        .order_by(DecisionRow.id.desc())
    )
    steps = session.scalars(select(StepRow).where(StepRow.task_id == task.id)).all()
    seconds = sum(
        (s.finished_at - s.started_at).total_seconds()
        for s in steps
        if s.finished_at is not None and s.stage in ("generate", "verify")
    )
    return Outcome(
        passed=last.passed if last is not None else None,
        failing=_failing(report) if report is not None else [],
        gate=decision.decision.removeprefix("policy:") if decision is not None else "-",
        approvals=task.approvals_required or 0,
        risk=task.risk or "",
        attempts=len(attempts),
        cost_usd=float(sum((a.cost_usd for a in attempts), Decimal(0))),
        seconds=round(seconds, 3),
        files={k: str(v) for k, v in (last.files if last is not None else {}).items()},
    )


def _failing(report: CheckReport) -> list[str]:
    return sorted({f.rule for f in report.findings if f.severity == "error"})


def _gate_context(session: Session, task_id: str) -> dict[str, Any]:
    """What the recorded gate saw (diff size, cost), from its audit entry."""
    entry = session.scalar(
        select(AuditRow)
        .where(AuditRow.task_id == task_id, AuditRow.action == "release")
        .order_by(AuditRow.seq.desc())
    )
    return dict((entry.detail or {}).get("context", {})) if entry is not None else {}


def estimate_cost(
    rt: Runtime, kind: JobKind, inputs: dict[str, Any], recalled: list[dict[str, Any]]
) -> Decimal:
    """The most one attempt of regenerating a task can spend (the prompt with its recalled
    memories, plus a full-length reply); a repair's prompt adds the previous code."""
    prompt = render_prompt(kind, inputs, recalled=recalled, feedback=[], previous_files={})
    return rt.router.estimate(_tier(rt, kind), prompt).usd


def recalled_for(session: Session, task_id: str) -> list[dict[str, Any]]:
    """The memories the recorded run's first attempt was given."""
    first = session.scalar(
        select(AttemptRow).where(AttemptRow.task_id == task_id).order_by(AttemptRow.number)
    )
    return list(first.recalled) if first is not None else []


@dataclass
class Spending:
    """What regenerating may spend in all (None: no cap) and has spent."""

    cap: Decimal | None
    spent: Decimal = Decimal(0)

    def allows(self, next_call: Decimal) -> bool:
        return self.cap is None or self.spent + next_call <= self.cap


def _tier(rt: Runtime, kind: JobKind) -> str:
    tier = kind.tier or rt.project.settings.generate.tier
    if tier in ("auto", "human"):  # a replay asks no person; auto starts at the cheapest
        return rt.project.settings.chain[0]
    return tier


def _regenerate(
    rt: Runtime,
    kind: JobKind,
    task: TaskRow,
    recalled: list[dict[str, Any]],
    spending: Spending,
) -> tuple[dict[str, str], CheckReport, int, Decimal, str]:
    """The candidate writes the code, with the repair loop, within the spend cap:
    (files, report, attempts, cost, why it stopped short or '')."""
    tier = _tier(rt, kind)
    provider = rt.provider(tier)
    settings = rt.project.settings.tiers[tier]
    files: dict[str, str] = {}
    feedback: list[Finding] = []
    cost = Decimal(0)
    report = CheckReport()
    for attempt in range(1, kind.max_attempts + 1):
        prompt = render_prompt(
            kind, dict(task.inputs), recalled=recalled, feedback=feedback, previous_files=files
        )
        worst = rt.router.estimate(tier, prompt).usd
        if not spending.allows(worst):
            why = f"stopped before attempt {attempt}: the spend cap ${spending.cap} is reached"
            return files, report, attempt - 1, cost, why
        try:
            generation = provider.generate(
                GenerationRequest(
                    task_id=f"replay:{task.id}",
                    kind=kind,
                    inputs=dict(task.inputs),
                    attempt=attempt,
                    prompt=prompt,
                    previous_files=files,
                    feedback=tuple(feedback),
                    recalled=tuple(recalled),
                )
            )
        except ShipyardError as exc:  # the model failed, or answered without the files
            return files, report, attempt, cost, f"attempt {attempt}: {exc.message}"
        call = price_call(
            provider=generation.provider,
            model=generation.model or settings.model,
            input_tokens=generation.input_tokens,
            output_tokens=generation.output_tokens,
            overrides=rt.project.settings.prices,
        ).usd
        cost += call
        spending.spent += call
        files = dict(generation.files)
        report = run_checks(kind, files, backend=rt.sandbox, limits=rt.limits, registry=rt.checks)
        if report.passed:
            return files, report, attempt, cost, ""
        feedback = list(report.findings)
    return files, report, kind.max_attempts, cost, ""


def replay_task(
    rt: Runtime,
    session: Session,
    task: TaskRow,
    *,
    step: Step,
    live: Policies,
    spending: Spending | None = None,
) -> TaskReplay:
    """Replay one recorded task under the candidate runtime ``rt`` (see the module docs);
    ``live`` are the live policies, to tell a newly denied tool from one always denied."""
    before = _before(session, task)
    result = TaskReplay(
        task_id=task.id, job_kind=task.job_kind, input_key=task.input_key, before=before,
        after=Outcome(passed=None),
    )  # fmt: skip
    try:
        kind = rt.jobs.get(task.job_kind)
    except ShipyardError:
        result.after.note = f"the candidate has no job kind {task.job_kind!r}"
        result.changes.append("job kind gone")
        return result
    try:
        validate_inputs(kind, dict(task.inputs), where=f"task {task.id}")
    except InputError as exc:
        result.after.note = f"its inputs no longer fit: {exc.message}"
        result.changes.append("newly invalid")
        return result
    rt.require_isolation_for(kind)  # as the live pipeline: no unisolated high-risk checks
    if kind.release is not None and kind.release.target not in rt.project.settings.targets:
        result.after.note = f"the candidate has no target {kind.release.target!r}"
        result.changes.append("target gone")
        return result
    started = time.perf_counter()
    attempts, cost = before.attempts, Decimal(str(before.cost_usd))
    if step == "generate":
        files, report, attempts, cost, short = _regenerate(
            rt, kind, task, recalled_for(session, task.id), spending or Spending(cap=None)
        )
        if short:
            result.after = Outcome(passed=None, attempts=attempts, cost_usd=float(cost))
            result.after.note = short
            result.changes.append("generation failed")
            return result
    else:
        files = before.files
        if not files:
            result.after.note = "nothing was generated in the recorded run"
            return result
        if step == "verify":
            report = run_checks(
                kind, files, backend=rt.sandbox, limits=rt.limits, registry=rt.checks
            )
        else:
            recorded = session.scalar(
                select(AttemptRow)
                .where(AttemptRow.task_id == task.id, AttemptRow.passed.is_not(None))
                .order_by(AttemptRow.number.desc())
            )
            report = CheckReport.from_dict(recorded.report or {} if recorded else {})
    after = Outcome(
        passed=report.passed,
        failing=_failing(report),
        attempts=attempts,
        cost_usd=float(cost),
        files=files,
    )
    if report.passed:
        _gate(rt, session, task, kind, report, after, live)
    after.seconds = round(time.perf_counter() - started, 3)
    result.after = after
    result.changes, result.diff = _compare(before, after)
    return result


def _gate(
    rt: Runtime,
    session: Session,
    task: TaskRow,
    kind: JobKind,
    report: CheckReport,
    after: Outcome,
    live: Policies,
) -> None:
    recorded = _gate_context(session, task.id)
    decision = govern.gate_for(
        rt,
        kind,
        report,
        diff_lines=int(recorded.get("diff_lines", 0)),
        cost_microusd=round(after.cost_usd * 1_000_000),
    )
    after.gate, after.approvals, after.risk = (
        decision.outcome.value, decision.approvals, decision.risk.value
    )  # fmt: skip
    if decision.outcome is GateOutcome.DENY:
        return
    calls = (["publish"] if kind.release is not None else []) + [e.tool for e in kind.effects]
    for name in calls:  # evaluated and recorded, never called
        tool = rt.tool(name)
        ref, found = entities.tool(tool.name, capability=tool.capability)
        request = govern.agent_request(
            kind.domain,
            "call_tool",
            govern.Subject(uid=ref, entities=found, label=f"tool {tool.name}"),
            {"capability": tool.capability, "job_kind": kind.name},
        )
        verdict = rt.policies.authorize(request)
        after.tools.append(
            {
                "tool": name,
                "allowed": verdict.allowed,
                "allowed_live": live.authorize(request).allowed,
                "reason": verdict.reason(),
            }
        )


_GATES = {"auto": 0, "needs_approval": 1, "deny": 2}


def _compare(before: Outcome, after: Outcome) -> tuple[list[str], str]:
    changes: list[str] = []
    if before.passed and after.passed is False:
        changes.append("newly failing")
    if before.passed is False and after.passed:
        changes.append("newly passing")
    if before.gate in _GATES and after.gate in _GATES and before.gate != after.gate:
        if after.gate == "deny":
            changes.append("newly denied")
        elif before.gate == "deny":
            changes.append("newly allowed")
        elif after.gate == "needs_approval":
            changes.append("newly needs approval")
        else:
            changes.append("newly auto")
    if any(t["allowed_live"] and not t["allowed"] for t in after.tools):
        changes.append("tool newly denied")
    if after.cost_usd > before.cost_usd + 1e-9:
        changes.append("cost up")
    elif after.cost_usd < before.cost_usd - 1e-9:
        changes.append("cost down")
    diff = ""
    if after.files and after.files != before.files:
        changes.append("code changed")
        lines = file_diff(before.files, after.files, old="recorded", new="replayed")
        diff = "\n".join(lines)
    return changes, diff
