"""``shipyard policy``: check the project's policies, print the schema, run policy tests."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import typer
from rich.table import Table

from shipyard.cli._common import (
    console,
    handle_errors,
    open_runtime,
    project_from,
    who,
)
from shipyard.errors import InputError, StateError
from shipyard.orchestrator._govern import evaluate_case, record
from shipyard.policy import DEFAULT_POLICY, SCHEMA, Policies
from shipyard.replay import content_hash, policy_hash
from shipyard.store import ReplayRunRow, transaction

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
        with rt.sessions() as session:
            run = session.get(ReplayRunRow, str(claimed_id))
        if run is None:  # the record, not the file, is what counts
            raise StateError(
                f"{replay_report} names replay {claimed_id}, which this project has no record of",
                hint="replay it in this project: shipyard replay --policy FILE --out REPORT",
            )
        live = list(rt.project.policy_files)
        if not live:
            raise StateError(
                "the project runs on Shipyard's built-in policy: there is no file to replace",
                hint="name your policy files in shipyard.toml's [policy] files first",
            )
        if run.candidate.get("config") != str(rt.project.config_path):
            raise StateError(
                f"replay {run.id} also tried another configuration ({run.candidate.get('config')})",
                hint="replay the policy alone against this project: shipyard replay --policy FILE",
            )
        if replaces is None:
            if len(live) != 1:
                raise InputError(
                    f"which policy file does {candidate} replace?",
                    hint="pass --replaces, one of: " + ", ".join(map(str, live)),
                )
            replaces = live[0]
        target = replaces.resolve()
        if target not in live:
            raise InputError(
                f"{replaces} is not one of the project's policy files",
                hint="[policy] files: " + ", ".join(map(str, live)),
            )
        if policy_hash(live) != run.baseline.get("policy_hash"):
            raise StateError(
                f"replay {run.id} was made against other live policies than today's",
                hint="replay again against the current policies",
            )
        contents = [data if p == target else p.read_bytes() for p in live]
        if content_hash(contents) != run.candidate.get("policy_hash"):
            raise StateError(
                f"replay {run.id} was produced for another policy version than {candidate}",
                hint=f"replay {candidate} itself: shipyard replay --policy {candidate} --out ...",
            )
        regressions = list(run.report.get("regressions", []))
        if regressions and not accept_regressions:
            raise StateError(
                f"replay {run.id} lists regressions: " + "; ".join(regressions),
                hint="fix the policy and replay again, or pass --accept-regressions",
            )
        staged = target.with_name(f".{target.name}.activating")
        staged.write_bytes(data)
        try:
            os.chmod(staged, target.stat().st_mode & 0o7777)
            Policies([*(p for p in live if p != target), staged])  # valid, or file and line
            with open(staged, "rb") as handle:
                os.fsync(handle.fileno())
            actor = who(as_)
            claimed = run.candidate["policy_hash"]
            with transaction(rt.sessions) as session:  # on the record, then the switch
                record(
                    session,
                    actor=actor,
                    action="policy_activate",
                    subject=f"policy {target.name}",
                    decision="done",
                    reason=f"replay {run.id}: {claimed[:19]} replaces "
                    f"{run.baseline['policy_hash'][:19]}",
                    detail={"replay": run.id, "regressions": regressions},
                )
            os.replace(staged, target)
        finally:
            staged.unlink(missing_ok=True)
    console.print(f"{target} now holds {candidate} (policy {claimed[:19]}), activated by {actor}")
