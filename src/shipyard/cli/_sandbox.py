"""``shipyard sandbox exec`` and ``shipyard check``: the sandbox and the checks, by hand.

Both work without a project; other tools rely on their JSON shapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from shipyard.cli._common import console, handle_errors, print_json
from shipyard.errors import InputError
from shipyard.sandbox import Limits, get_backend

if TYPE_CHECKING:
    from shipyard.model import CheckReport

sandbox_app = typer.Typer(help="Run commands in the sandbox.", no_args_is_help=True)

DEFAULT_CHECKS = "compile,ruff,pytest,bandit,secrets"


@sandbox_app.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
@handle_errors
def exec_(
    ctx: typer.Context,
    workdir: Path = typer.Option(..., "--workdir", help="Folder copied into the workspace."),
    timeout: float = typer.Option(60.0, "--timeout", help="Wall-clock limit in seconds."),
    memory_mb: int = typer.Option(2048, "--memory-mb", help="Address-space limit."),
    backend: str = typer.Option("auto", "--backend", help="bwrap, process or auto."),
) -> None:
    """Run one command (after --) in the sandbox; print one JSON object with what it did."""
    argv = list(ctx.args)
    if not argv:
        raise InputError("no command given", hint="shipyard sandbox exec --workdir DIR -- CMD")
    if not workdir.is_dir():
        raise InputError(f"--workdir {workdir} is not a folder", hint="pass an existing folder")
    sandbox = get_backend(backend, one_shot=True)  # one run: a sandbox of its own, no pool
    try:
        limits = Limits(
            timeout_seconds=timeout, cpu_seconds=max(1, int(timeout)), memory_mb=memory_mb
        )
        result = sandbox.run(argv, workdir=workdir, limits=limits)
    finally:
        sandbox.close()
    typer.echo(json.dumps(result.to_dict()))


@handle_errors
def check(
    folder: Path = typer.Argument(..., help="Folder to check (copied, never written)."),
    checks: str = typer.Option(DEFAULT_CHECKS, "--checks", help="Comma-separated check names."),
    backend: str = typer.Option("auto", "--backend", help="bwrap, process or auto."),
    timeout: float = typer.Option(60.0, "--timeout", help="Wall-clock limit per check."),
    as_json: bool = typer.Option(False, "--json", help="Print the CheckReport as JSON."),
) -> None:
    """Run the check pipeline on a folder in the sandbox. Exit 0 all passed, 1 any failed."""
    names = [name.strip() for name in checks.split(",") if name.strip()]
    if not names:
        raise InputError("no checks named", hint=f"e.g. --checks {DEFAULT_CHECKS}")
    # The checks run one after another on one warm slot (it imports their tooling once, which
    # fresh sandboxes would each do again); it starts now, while this process imports them too.
    sandbox = get_backend(backend, pool_size=1)
    try:
        sandbox.warm()
        from shipyard.checks import BUILTIN_CHECKS, check_folder
        from shipyard.jobs import CheckSpec

        # The folder holds its own tests: pytest discovers them there.
        specs = [
            CheckSpec(name=n, options={"in_workspace": True} if n == "pytest" else {})
            for n in names
        ]
        limits = Limits(timeout_seconds=timeout, cpu_seconds=max(1, int(timeout)))
        report = check_folder(
            folder, specs, backend=sandbox, limits=limits, registry=BUILTIN_CHECKS
        )
    finally:
        sandbox.close()
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    raise typer.Exit(0 if report.passed else 1)


def _print_report(report: CheckReport) -> None:
    for note in report.notes:
        console.print(f"[yellow]{note}[/]")
    for result in report.results:
        mark = "[green]✓[/]" if result.passed else "[red]✗[/]"
        console.print(f"{mark} {result.check} ({result.duration_ms:.0f} ms) {result.detail}")
        for f in result.findings:
            where = f" {f.location()}" if f.location() else ""
            console.print(f"    {f.severity} {f.rule}{where}: {f.message}", highlight=False)
    verdict = "[green]all checks passed[/]" if report.passed else "[red]checks failed[/]"
    console.print(f"{verdict} (sandbox: {report.sandbox})")
