"""``shipyard submit``: one task from --input pairs, or a batch from a CSV / JSONL / JSON file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from shipyard.cli._common import (
    as_option,
    console,
    err_console,
    handle_errors,
    open_runtime,
    print_json,
    who,
)
from shipyard.errors import InputError
from shipyard.jobs import BatchRow, read_batch
from shipyard.service import submit as submit_tasks

PARTIAL_EXIT = 3
"""Exit status when some rows were rejected and the others submitted."""


def _single(pairs: list[str]) -> BatchRow:
    data: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--input {pair!r} is not KEY=VALUE", hint="e.g. --input sku=SKU-001")
        try:
            data[key] = json.loads(value)
        except json.JSONDecodeError:
            data[key] = value
    return BatchRow(where="--input", data=data)


@handle_errors
def submit(
    ctx: typer.Context,
    job: str = typer.Argument(..., help="The job kind, e.g. landing-page."),
    batch: Path | None = typer.Option(
        None, "--batch", "-b", help="CSV, JSONL or JSON file of inputs."
    ),
    inputs: list[str] = typer.Option([], "--input", "-i", help="KEY=VALUE (JSON values allowed)."),
    as_: str | None = as_option("Submit"),
    again: bool = typer.Option(
        False, "--again", help="Make new tasks for rows already submitted (a new generation)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Validate inputs at the door and enqueue one task per valid row.

    Bad rows are reported with their row and field and recorded as invalid; the rest go on.
    A row already submitted (same job kind, input key and inputs) returns its existing task
    instead of a new one; --again makes a new one anyway.
    Exit status: 0 all submitted (or already there), 3 some rejected, 2 none valid.
    """
    if (batch is None) == (not inputs):
        raise InputError("give either --batch FILE or --input KEY=VALUE pairs", hint="see --help")
    with open_runtime(ctx) as rt:
        person = who(rt, as_, need="operate")
        kind = rt.jobs.get(job)
        rows = list(read_batch(batch)) if batch else [_single(inputs)]
        with Progress(
            TextColumn("submitting"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err_console,
            transient=True,
            disable=len(rows) < 2 or as_json,
        ) as progress:
            bar = progress.add_task("rows", total=len(rows))
            result = submit_tasks(
                rt,
                kind,
                _counted(rows, progress, bar),
                submitted_by=person.name,
                principal=person.principal,
                again=again,
            )
    if as_json:
        print_json(
            {
                "batch": result.batch_id,
                "submitted": result.submitted,
                "rejected": [r.__dict__ for r in result.rejected],
                "existing": [e.__dict__ for e in result.existing],
                "business_keys": result.business_keys,
            }
        )
    else:
        for bad in result.rejected:
            err_console.print(f"[red]rejected[/] {bad.message}", highlight=False)
        for found in result.existing:
            console.print(
                f"[yellow]existing[/] {found.where}: {found.task_id}"
                f" {result.business_keys[found.task_id]} ({found.state})",
                highlight=False,
            )
        existing = len(result.submitted) - len(result.new)
        console.print(
            f"batch {result.batch_id}: [green]{len(result.new)} submitted[/]"
            + (f", [yellow]{existing} already submitted[/]" if existing else "")
            + (f", [red]{len(result.rejected)} rejected[/]" if result.rejected else "")
            + f" ({kind.name}, domain {kind.domain})"
        )
        if existing:
            console.print("(--again submits those rows as new tasks)", highlight=False)
    if result.rejected:
        raise typer.Exit(PARTIAL_EXIT if result.submitted else InputError.exit_status)


def _counted(rows: list[BatchRow], progress: Progress, bar: TaskID) -> Iterator[BatchRow]:
    for row in rows:
        yield row
        progress.advance(bar)
