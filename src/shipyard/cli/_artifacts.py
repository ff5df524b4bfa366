"""``shipyard artifacts``: stored versions, their verification, diffs and retention."""

from __future__ import annotations

import typer
from rich.table import Table

from shipyard.cli._common import (
    console,
    err_console,
    handle_errors,
    open_runtime,
    print_json,
    timestamp,
)
from shipyard.service import (
    collect_garbage,
    diff_artifacts,
    find_artifact,
    list_artifacts,
    verify_artifact,
)

artifacts_app = typer.Typer(
    help="Artifact versions: list (default), verify, diff, gc.", invoke_without_command=True
)


@artifacts_app.callback()
@handle_errors
def artifacts(
    ctx: typer.Context,
    job: str = typer.Option("", "--job", help="Only this job kind."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Artifact versions, newest first: content hash, job kind, key, files, live targets."""
    if ctx.invoked_subcommand:
        return
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
            ", ".join(live) or ("collected" if a.collected_at else "-"),
        )
    console.print(table)


@artifacts_app.command("verify")
@handle_errors
def verify(
    ctx: typer.Context,
    refs: list[str] = typer.Argument(None, help="Artifact ids (or prefixes, or task ids)."),
    all_: bool = typer.Option(False, "--all", help="Every stored version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Say what was checked."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check the signature, every file's digest and the recorded check reports (exit 1 if any
    version fails, with the exact reason)."""
    with open_runtime(ctx) as rt:
        listed = list_artifacts(rt)
        collected = [a.id for a, _ in listed if a.collected_at is not None]
        ids = (
            [a.id for a, _ in listed if a.collected_at is None]
            if all_
            else [find_artifact(rt, r) for r in refs or []]
        )
        if all_ and collected:
            err_console.print(f"{len(collected)} version(s) collected by gc: not verified")
        if not ids:
            err_console.print("name artifacts to verify, or pass --all")
            raise typer.Exit(2)
        results = [verify_artifact(rt, artifact_id) for artifact_id in ids]
    if as_json:
        print_json(
            [
                {
                    "artifact": r.artifact_id,
                    "ok": r.ok,
                    "checked": r.checked,
                    "problems": r.problems,
                }
                for r in results
            ]
        )
    else:
        for r in results:
            mark = "[green]verified[/]" if r.ok else "[red bold]FAILED[/]"
            console.print(f"{mark} {r.artifact_id}")
            for line in r.checked if verbose or not all_ else []:
                console.print(f"  ✓ {line}", highlight=False, markup=False)
            for line in r.problems:
                console.print(f"  ✗ {line}", style="red", highlight=False, markup=False)
        passed = sum(1 for r in results if r.ok)
        console.print(f"{passed} of {len(results)} version(s) verified")
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@artifacts_app.command("diff")
@handle_errors
def diff(
    ctx: typer.Context,
    first: str = typer.Argument(..., help="The older version (id, prefix or task id)."),
    second: str = typer.Argument(..., help="The newer version."),
    force: bool = typer.Option(False, "--force", help="Diff versions of different things."),
) -> None:
    """What changed between two versions of the same job kind and input key."""
    with open_runtime(ctx) as rt:
        lines = diff_artifacts(rt, first, second, force=force)
    for line in lines:
        typer.echo(line)
    if not lines:
        err_console.print("no difference")


@artifacts_app.command("gc")
@handle_errors
def gc(
    ctx: typer.Context,
    apply: bool = typer.Option(False, "--apply", help="Remove them (default: a dry run)."),
) -> None:
    """Expire unreleased versions older than artifacts.keep_days (dry run unless --apply)."""
    with open_runtime(ctx) as rt:
        report = collect_garbage(rt, apply=apply)
    verb = "collected" if apply else "would collect"
    for artifact_id in report.expired:
        console.print(f"{verb} {artifact_id}")
    kept: dict[str, int] = {}
    for why in report.kept.values():
        kept[why] = kept.get(why, 0) + 1
    for why, count in sorted(kept.items()):
        console.print(f"kept {count}: {why}")
    console.print(
        f"{len(report.expired)} version(s) {verb}, {report.freed_bytes} bytes"
        + ("" if apply else " (dry run: pass --apply to remove them)")
    )
