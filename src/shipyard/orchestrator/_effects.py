"""Effects outside Shipyard: tool calls journalled by idempotency key, and the saga.

A task's effects run in order (the release is position 0, then the job kind's ``effects``).
Each call is authorized by policy (``call_tool``), journalled under the key
``BUSINESSKEY:POSITION:TOOL`` before it acts and marked done with its result after, so a
repeated call (a re-run step after a crash) replays the recorded result instead of acting
again; the key also travels to the tool (e.g. as ``Idempotency-Key``) for the crash between
acting and recording. The task's business key (``tasks.business_key``: job kind, subject
and the inputs' digest, given at submission) rather than its id names the call, so the same
business key is the same call to the outside service whichever task makes it. When a call
fails, ``compensate`` undoes the completed calls in reverse order and records each undo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard._crash import crashpoint
from shipyard.errors import ShipyardError
from shipyard.jobs import JobKind
from shipyard.model import ReleaseState
from shipyard.orchestrator import _govern as govern
from shipyard.orchestrator._runtime import Runtime
from shipyard.policy import entities
from shipyard.store import ReleaseRow, TaskRow, ToolCallRow, transaction
from shipyard.tools import Tool

__all__ = ["Outcome", "compensate", "invoke", "restore_replaced", "tool_key"]


def restore_replaced(session: Session, release: ReleaseRow) -> None:
    """A release was undone: the one it replaced at its path is live again."""
    previous = session.scalar(
        select(ReleaseRow)
        .where(
            ReleaseRow.target == release.target,
            ReleaseRow.path == release.path,
            ReleaseRow.state == ReleaseState.REPLACED,
        )
        .order_by(ReleaseRow.id.desc())
    )
    if previous is not None:
        previous.state = ReleaseState.LIVE.value


def tool_key(business_key: str, position: int, tool: str) -> str:
    """The call's journal key and the idempotency key it carries to the tool."""
    return f"{business_key}:{position}:{tool}"


def _journal_key(session: Session, task_id: str, position: int, tool: str) -> str:
    """The key of this call: the one it is journalled under if it has begun (a call begun
    before business keys keeps ``TASK:POSITION:TOOL``), else from the task's business key
    (its id when it has none)."""
    journalled = session.scalar(
        select(ToolCallRow.key).where(
            ToolCallRow.task_id == task_id,
            ToolCallRow.position == position,
            ToolCallRow.tool == tool,
        )
    )
    if journalled:
        return journalled
    business = session.scalar(select(TaskRow.business_key).where(TaskRow.id == task_id))
    return tool_key(business or task_id, position, tool)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    ok: bool
    result: dict[str, Any]
    error: str = ""
    replayed: bool = False
    """True when the journal already held the result (nothing was called)."""


def _now() -> datetime:
    return datetime.now(UTC)


def invoke(
    rt: Runtime, kind: JobKind, task_id: str, position: int, tool_name: str, args: dict[str, Any]
) -> Outcome:
    """Call ``tool_name`` once for this task and position (see the module's docstring)."""
    with rt.sessions() as session:
        call = _Call(
            key=_journal_key(session, task_id, position, tool_name),
            task_id=task_id,
            tool=rt.tool(tool_name),
            actor=f"agent {kind.domain}",
        )
        row = session.get(ToolCallRow, call.key)
        if row is not None and row.status == "done":
            return Outcome(ok=True, result=dict(row.result), replayed=True)
    verdict = rt.policies.authorize(
        govern.agent_request(
            kind.domain,
            "call_tool",
            call.subject,
            {"capability": call.tool.capability, "job_kind": kind.name},
        )
    )
    with transaction(rt.sessions) as session:
        row = _journalled(session, call, position, args)
        if not verdict.allowed:
            row.status, row.error, row.finished_at = "failed", verdict.reason(), _now()
            call.audit(session, "deny", verdict.reason(), {"key": call.key})
            return Outcome(ok=False, result={}, error=f"{call.tool.name}: {verdict.reason()}")
        row.status, row.calls = "calling", row.calls + 1
    crashpoint(f"tool.{call.tool.name}.before")
    try:
        with rt.tracing.span(task_id, f"execute_tool {call.tool.name}", attributes=call.span()):
            result = call.tool.call(args, key=call.key)
    except ShipyardError as exc:
        with transaction(rt.sessions) as session:
            row = _journalled(session, call, position, args)
            row.status, row.error, row.finished_at = "failed", exc.message, _now()
            call.audit(session, "failed", exc.message, {"key": call.key, "args": args})
        return Outcome(ok=False, result={}, error=f"{call.tool.name}: {exc.message}")
    crashpoint(f"tool.{call.tool.name}.called")
    with transaction(rt.sessions) as session:
        row = _journalled(session, call, position, args)
        row.status, row.result, row.finished_at = "done", result, _now()
        detail = {"key": call.key, "args": args, "result": result}
        call.audit(session, "done", verdict.reason(), detail)
    crashpoint(f"tool.{call.tool.name}.after")
    return Outcome(ok=True, result=result)


@dataclass(frozen=True, kw_only=True)
class _Call:
    """One journalled tool call: its key, tool and who makes it, for the journal and audit."""

    key: str
    task_id: str
    tool: Tool
    actor: str

    @property
    def subject(self) -> govern.Subject:
        ref, found = entities.tool(self.tool.name, capability=self.tool.capability)
        return govern.Subject(uid=ref, entities=found, label=f"tool {self.tool.name}")

    def span(self) -> dict[str, Any]:
        return {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": self.tool.name,
            "shipyard.tool.key": self.key,
            "shipyard.tool.capability": self.tool.capability,
        }

    def audit(self, session: Session, decision: str, reason: str, detail: dict[str, Any]) -> None:
        govern.record(
            session,
            actor=self.actor,
            action="call_tool",
            subject=self.subject,
            decision=decision,
            reason=reason,
            task_id=self.task_id,
            detail=detail,
        )


def _journalled(session: Session, call: _Call, position: int, args: dict[str, Any]) -> ToolCallRow:
    """The call's journal row, written now if this is its first try."""
    row = session.get(ToolCallRow, call.key)
    if row is None:
        row = ToolCallRow(
            key=call.key,
            task_id=call.task_id,
            position=position,
            tool=call.tool.name,
            capability=call.tool.capability,
            args=args,
            status="calling",
            result={},
            error="",
            calls=0,
            started_at=_now(),
            compensation={},
        )
        session.add(row)
    return row


def compensate(rt: Runtime, kind: JobKind, task_id: str, reason: str) -> list[str]:
    """Undo the task's completed calls, newest first; what happened to each, for the record.

    Safe to run again: calls already compensated (or marked irreversible) are skipped. A
    compensation that fails is recorded and the others still run.
    """
    notes: list[str] = []
    with rt.sessions() as session:
        done = session.scalars(
            select(ToolCallRow)
            .where(ToolCallRow.task_id == task_id, ToolCallRow.status == "done")
            .order_by(ToolCallRow.position.desc())
        ).all()
    for row in done:
        tool = rt.tool(row.tool)
        status, outcome, detail = "compensated", "", {}
        if not tool.reversible:
            status, outcome = "irreversible", f"{row.tool}#{row.position}: cannot be undone"
        else:
            try:
                detail = tool.compensate(dict(row.args), dict(row.result), key=row.key)
                outcome = f"{row.tool}#{row.position}: undone"
            except ShipyardError as exc:
                status, outcome = (
                    "undo_failed",
                    f"{row.tool}#{row.position}: undo failed: {exc.message}",
                )
        with transaction(rt.sessions) as session:
            current = session.get(ToolCallRow, row.key)
            if current is None or current.status != "done":
                continue  # a re-run found it handled already
            current.status, current.compensation = status, detail
            current.compensated_at = _now()
            if row.tool == "publish" and status == "compensated":
                release = session.scalar(select(ReleaseRow).where(ReleaseRow.task_id == task_id))
                if release is not None:
                    release.state = ReleaseState.WITHDRAWN.value
                    restore_replaced(session, release)
            govern.record(
                session,
                actor=f"agent {kind.domain}",
                action="compensate",
                subject=f"tool {row.tool}",
                decision=status,
                reason=f"{outcome} (because {reason})",
                task_id=task_id,
                detail={"key": row.key, "compensation": detail},
            )
        notes.append(outcome)
    return notes
