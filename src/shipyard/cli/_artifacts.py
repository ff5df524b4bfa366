"""``shipyard artifacts``: stored versions with their hashes and where they are live."""

from __future__ import annotations

import typer
from rich.table import Table

from shipyard.cli._common import console, handle_errors, open_runtime, print_json, timestamp
from shipyard.orchestrator import list_artifacts


@handle_errors
def artifacts(
    ctx: typer.Context,
    job: str = typer.Option("", "--job", help="Only this job kind."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Artifact versions, newest first: content hash, job kind, key, files, live targets."""
    with open_runtime(ctx) as rt:
        rows = list_artifacts(rt, job_kind=job)
    if as_json:
        print_json(
            [
                {
                    "id": a.id,
                    "job_kind": a.job_kind,
                    "key": a.input_key,
                    "files": a.files,
                    "size": a.size,
                    "created_at": a.created_at,
                    "task": a.first_task_id,
                    "live_on": live,
                }
                for a, live in rows
            ]
        )
        return
    table = Table(
        "artifact (sha256)",
        "job kind",
        "key",
        "files",
        "bytes",
        "created",
        "live on",
        title=f"{len(rows)} artifact version(s)",
    )
    for a, live in rows:
        table.add_row(
            a.id.removeprefix("sha256:")[:16],
            a.job_kind,
            a.input_key,
            ", ".join(sorted(a.files)),
            str(a.size),
            timestamp(a.created_at),
            ", ".join(live) or "-",
        )
    console.print(table)
