"""``shipyard policy``: check the project's policies, print the schema, run policy tests."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import typer
from rich.table import Table

from shipyard.cli._common import (
    atomic_text,
    console,
    handle_errors,
    open_runtime,
    project_from,
    who,
)
from shipyard.errors import InputError, StateError
from shipyard.orchestrator._govern import evaluate_case, record
from shipyard.policy import DEFAULT_POLICY, SCHEMA, Policies
from shipyard.replay import policy_hash
from shipyard.store import transaction

policy_app = typer.Typer(
    help="Cedar policies: who may do what (default deny).", no_args_is_help=True
)


@policy_app.command("check")
@handle_errors
def check(ctx: typer.Context) -> None:
    """Validate the project's policies against Shipyard's schema (as a worker does at start)."""
    project = project_from(ctx)
    policies = Policies.load(project.policy_files)
    files = ", ".join(str(f) for f in policies.files)
    built_in = " (Shipyard's built-in policy)" if policies.files == [DEFAULT_POLICY] else ""
    console.print(f"{policies.count} policies valid in {files}{built_in}", highlight=False)


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
    as_: str | None = typer.Option(None, "--as", help="Who activates it (recorded)."),
) -> None:
    """Make a replayed candidate policy live, only if the report was produced for exactly this
    policy against exactly the live one."""
    try:
        report = json.loads(replay_report.read_text(encoding="utf-8"))
        claimed = report["candidate"]["policy_hash"]
        baseline = report["baseline"]["policy_hash"]
    except FileNotFoundError as exc:
        raise InputError(f"{replay_report}: no such file", hint="check the path") from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(
            f"{replay_report}: not a replay report",
            hint="write one with `shipyard replay --policy FILE --out REPORT.json`",
        ) from exc
    if not candidate.is_file():
        raise InputError(f"{candidate}: no such file", hint="check the path")
    with open_runtime(ctx) as rt:
        live = list(rt.project.policy_files)
        if replaces is None:
            if len(live) != 1:
                raise InputError(
                    f"which policy file does {candidate} replace?",
                    hint="pass --replaces, one of: " + (", ".join(map(str, live)) or "(none)"),
                )
            replaces = live[0]
        target = replaces.resolve()
        if target not in live:
            raise InputError(
                f"{replaces} is not one of the project's policy files",
                hint="[policy] files: " + (", ".join(map(str, live)) or "(none)"),
            )
        if policy_hash(rt.policies.files) != baseline:
            raise StateError(
                f"{replay_report} was replayed against other live policies than today's",
                hint="replay again against the current policies",
            )
        new_set = [candidate.resolve() if p == target else p for p in live]
        if policy_hash(new_set) != claimed:
            raise StateError(
                f"{replay_report} was produced for another policy version than {candidate}",
                hint=f"replay {candidate} itself: shipyard replay --policy {candidate} --out ...",
            )
        if report.get("regressions") and not accept_regressions:
            raise StateError(
                f"{replay_report} lists regressions: " + "; ".join(report["regressions"]),
                hint="fix the policy and replay again, or pass --accept-regressions",
            )
        Policies(new_set)  # valid against the schema, or an error naming file and line
        text = candidate.read_text(encoding="utf-8")
        actor = who(as_)
        with transaction(rt.sessions) as session:  # on the record before the file changes
            record(
                session,
                actor=actor,
                action="policy_activate",
                subject=f"policy {target.name}",
                decision="done",
                reason=f"replay {report.get('id', '?')}: {claimed[:19]} replaces {baseline[:19]}",
                detail={"report": report.get("id"), "regressions": report.get("regressions", [])},
            )
        with atomic_text(target) as handle:
            handle.write(text)
    console.print(f"{target} now holds {candidate} (policy {claimed[:19]}), activated by {actor}")
