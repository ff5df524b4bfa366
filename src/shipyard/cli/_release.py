"""``shipyard rollback``: switch a target back to the version live before the current one."""

from __future__ import annotations

import typer

from shipyard.cli._common import console, handle_errors, open_runtime, print_json, who
from shipyard.errors import InputError
from shipyard.orchestrator import Runtime
from shipyard.orchestrator import rollback as rollback_target


def default_target(rt: Runtime, name: str) -> str:
    if name:
        return name
    settings = rt.project.settings
    if settings.serve.target:
        return settings.serve.target
    if len(settings.targets) == 1:
        return next(iter(settings.targets))
    raise InputError("which target?", hint=f"pass --target, one of: {', '.join(settings.targets)}")


@handle_errors
def rollback(
    ctx: typer.Context,
    target: str = typer.Option("", "--target", help="Target name (default: the served one)."),
    as_: str | None = typer.Option(None, "--as", help="Who rolls back (recorded)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Atomically switch the target back to its previous version; records who and what left."""
    with open_runtime(ctx) as rt:
        result = rollback_target(rt, default_target(rt, target), actor=who(as_))
    if as_json:
        print_json(result)
        return
    console.print(
        f"{result['target']}: version {result['from_version']} -> {result['to_version']}; "
        f"{len(result['rolled_back_tasks'])} release(s) rolled back"
    )
