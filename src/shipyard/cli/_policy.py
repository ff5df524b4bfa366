"""``shipyard policy``: check the project's policies, print the schema, run policy tests."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import typer
from rich.table import Table

from shipyard.cli._common import (
    as_option,
    console,
    handle_errors,
    open_runtime,
    project_from,
    who,
)
from shipyard.errors import InputError
from shipyard.policy import DEFAULT_POLICY, SCHEMA, Policies
from shipyard.replay import activate_policy
from shipyard.service import evaluate_case, require_release_plans

policy_app = typer.Typer(
    help="Cedar policies: who may do what (default deny).", no_args_is_help=True
)


@policy_app.command("check")
@handle_errors
def check(ctx: typer.Context) -> None:
    """Validate the project's policies against Shipyard's schema, and check that every
    production target a job kind releases to has a rollout plan or a policy permitting
    release_immediately (as a worker does at start)."""
    project = project_from(ctx)
    policies = Policies.load(project.policy_files)
    files = ", ".join(str(f) for f in policies.files)
    built_in = " (Shipyard's built-in policy)" if policies.files == [DEFAULT_POLICY] else ""
    console.print(f"{policies.count} policies valid in {files}{built_in}", highlight=False)
    require_release_plans(project)
    console.print("every production target has a rollout plan or leave to release at once")


@policy_app.command("schema")
def schema() -> None:
    """Print Shipyard's Cedar schema: the principals, actions, resources and context."""
    typer.echo(SCHEMA.read_text(encoding="utf-8"), nl=False)


@policy_app.command("test")
@handle_errors
def test(
    ctx: typer.Context,
    cases: Path = typer.Argument(..., help="A TOML file of [[case]] tables (docs/policies.md)."),
) -> None:
    """Evaluate request fixtures against the policies; exit 1 if any is not as expected."""
    try:
        data = tomllib.loads(cases.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{cases}: no such file", hint="check the path") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{cases}: not valid TOML: {exc}", hint="fix the syntax") from exc
    listed = data.get("case")
    if not isinstance(listed, list) or not listed:
        raise InputError(f"{cases}: no [[case]] tables", hint="see docs/policies.md for the format")
    with open_runtime(ctx) as rt:
        results = [
            evaluate_case(rt, case, where=f"{cases} case {i}") for i, case in enumerate(listed, 1)
        ]
    table = Table("", "case", "request", "expected", "got", "because", title=str(cases))
    for r in results:
        table.add_row(
            "[green]✓[/]" if r.passed else "[red]✗[/]",
            r.name,
            r.request,
            r.expected,
            "allow" if r.verdict.allowed else "deny",
            r.verdict.reason(),
        )
    console.print(table)
    failed = [r for r in results if not r.passed]
    console.print(f"{len(results) - len(failed)} of {len(results)} as expected")
    if failed:
        raise typer.Exit(1)


@policy_app.command("activate")
@handle_errors
def activate(
    ctx: typer.Context,
    candidate: Path = typer.Argument(..., help="The candidate .cedar file that was replayed."),
    replay_report: Path = typer.Option(
        ..., "--replay-report", help="The JSON report of `shipyard replay --policy CANDIDATE`."
    ),
    replaces: Path | None = typer.Option(
        None, "--replaces", help="The live policy file it replaces (default: the only one)."
    ),
    accept_regressions: bool = typer.Option(
        False, "--accept-regressions", help="Activate although the report lists regressions."
    ),
    as_: str | None = as_option("Activate it"),
) -> None:
    """Make a replayed candidate policy live, only if the live policies permit you
    activate_policy and the report was produced for exactly this policy against exactly the
    live one."""
    try:
        claimed_id = json.loads(replay_report.read_text(encoding="utf-8"))["id"]
    except FileNotFoundError as exc:
        raise InputError(f"{replay_report}: no such file", hint="check the path") from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(
            f"{replay_report}: not a replay report",
            hint="write one with `shipyard replay --policy FILE --out REPORT.json`",
        ) from exc
    try:
        data = candidate.read_bytes()  # read once: what is checked is what is written
    except FileNotFoundError as exc:
        raise InputError(f"{candidate}: no such file", hint="check the path") from exc
    with open_runtime(ctx) as rt:
        person = who(rt, as_, need="administer")
        done = activate_policy(
            rt,
            candidate=candidate,
            data=data,
            replay_id=str(claimed_id),
            report=replay_report,
            replaces=replaces,
            accept_regressions=accept_regressions,
            actor=person.name,
            principal=person.principal,
        )
    console.print(
        f"{done.target} now holds {candidate} (policy {done.policy_hash[:19]}), "
        f"activated by {person.describe()}"
    )
