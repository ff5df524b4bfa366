"""``shipyard approvals``, ``approve`` and ``reject``: a person's decision at the gate."""

from __future__ import annotations

import typer
from rich.table import Table

from shipyard.cli._common import (
    as_option,
    console,
    err_console,
    handle_errors,
    open_runtime,
    print_json,
    timestamp,
    warn_no_two_person_guarantee,
    who,
)
from shipyard.errors import InputError, ShipyardError
from shipyard.service import Identity, Runtime, approval_queue, list_tasks
from shipyard.service import approve as approve_task
from shipyard.service import reject as reject_task


@handle_errors
def approvals(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Tasks waiting for a person's decision: approvals given and needed, risk, escalation."""
    with open_runtime(ctx) as rt:
        waiting = approval_queue(rt)
        warn_no_two_person_guarantee(rt)
    if as_json:
        print_json(
            [
                {
                    "id": w.task.id,
                    "job_kind": w.task.job_kind,
                    "key": w.task.input_key,
                    "artifact": w.task.artifact_id,
                    "submitted_by": w.task.submitted_by,
                    "risk": w.task.risk,
                    "approvals": w.approvers,
                    "approved_by": w.principals,
                    "approvals_required": w.task.approvals_required,
                    "escalated": w.escalation,
                }
                for w in waiting
            ]
        )
        return
    table = Table(
        "task",
        "job kind",
        "key",
        "risk",
        "approvals",
        "submitted by",
        "waiting since",
        "escalated",
        title=f"{len(waiting)} waiting for approval",
    )
    for w in waiting:
        t = w.task
        given = f"{len(w.approvers)}/{max(t.approvals_required, 1)}"
        names = [
            a if a == p else f"{a} by {p}" for a, p in zip(w.approvers, w.principals, strict=True)
        ]
        table.add_row(
            t.id,
            t.job_kind,
            t.input_key,
            t.risk,
            given + (f" ({', '.join(names)})" if names else ""),
            t.submitted_by,
            timestamp(w.since),
            w.escalation,
        )
    console.print(table)


@handle_errors
def approve(
    ctx: typer.Context,
    tasks: list[str] = typer.Argument(None, help="Task ids (or unique prefixes)."),
    all_: bool = typer.Option(False, "--all", help="Approve every task waiting for approval."),
    as_: str | None = as_option("Approve"),
    reason: str = typer.Option("", "--reason", help="Why (recorded)."),
) -> None:
    """Approve waiting tasks; their workflows go on to release. Who you are is recorded, and
    each person counts once towards the approvals a task needs."""
    _decide(ctx, tasks or [], all_, as_, reason, approve=True)


@handle_errors
def reject(
    ctx: typer.Context,
    tasks: list[str] = typer.Argument(..., help="Task ids (or unique prefixes)."),
    reason: str = typer.Option(..., "--reason", help="Why (required, recorded, remembered)."),
    as_: str | None = as_option("Reject"),
) -> None:
    """Reject waiting tasks: nothing is released, and the reason is remembered for next time."""
    _decide(ctx, tasks, False, as_, reason, approve=False)


def _decide(
    ctx: typer.Context, refs: list[str], all_: bool, as_: str | None, reason: str, *, approve: bool
) -> None:
    if all_ == bool(refs):
        raise InputError(
            "name the tasks, or pass --all (not both)", hint="see `shipyard approvals`"
        )
    with open_runtime(ctx) as rt:
        warn_no_two_person_guarantee(rt)
        person = who(rt, as_, need="decide")
        ids = [t.id for t in list_tasks(rt, states=["waiting_approval"])] if all_ else refs
        failures = _decide_each(rt, ids, person, reason, approve=approve)
    if all_ and not ids:
        console.print("no task is waiting for approval")
    if failures:
        raise typer.Exit(1)


def _decide_each(
    rt: Runtime, ids: list[str], person: Identity, reason: str, *, approve: bool
) -> int:
    """Decide on each task in turn; the number refused (each said on stderr)."""
    failures = 0
    for ref in ids:
        try:
            if approve:
                task = approve_task(
                    rt, ref, actor=person.name, principal=person.principal, reason=reason
                )
            else:
                task = reject_task(
                    rt, ref, actor=person.name, principal=person.principal, reason=reason
                )
            still = " (more approvals needed)" if task.state == "waiting_approval" else ""
            console.print(f"{task.id} {task.state} by {person.describe()}{still}")
        except ShipyardError as exc:
            failures += 1
            err_console.print(f"{ref}: {exc.message}", style="red", markup=False)
            if exc.hint:
                err_console.print(f"  hint: {exc.hint}", markup=False)
    return failures
