"""``shipyard audit``: verify the hash chain, export the log."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from shipyard.cli._common import atomic_text, console, err_console, handle_errors, open_runtime
from shipyard.service import export_audit, verify_audit

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@audit_app.command("verify")
@handle_errors
def verify(ctx: typer.Context) -> None:
    """Recompute the hash chain; name the first entry that does not fit (exit 1)."""
    with open_runtime(ctx) as rt:
        verdict = verify_audit(rt)
    result = verdict.check
    if result.ok:
        console.print(
            f"audit log intact: {result.entries} entries, head {verdict.head}",
            highlight=False,
            soft_wrap=True,
        )
        return
    err_console.print(
        f"[red bold]audit log broken at entry {result.first_broken}[/]: {result.problem} "
        f"({result.entries} entries before it are intact)",
        highlight=False,
    )
    raise typer.Exit(1)


@audit_app.command("export")
@handle_errors
def export(
    ctx: typer.Context,
    output: Path | None = typer.Option(None, "--output", "-o", help="File (default: stdout)."),
    task: str = typer.Option("", "--task", help="Only this task's entries."),
) -> None:
    """Write the log as JSON Lines, each entry with its hash and its predecessor's."""
    with open_runtime(ctx) as rt:
        if output is None:
            export_audit(rt, sys.stdout, task_id=task)
            return
        with atomic_text(output) as out:
            count = export_audit(rt, out, task_id=task)
    err_console.print(f"{count} entries written to {output}")
