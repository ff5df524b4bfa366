"""``shipyard incidents``, ``shipyard incident resolve`` and ``shipyard monitors``: what the
monitors saw go wrong on live paths, a person closing an alert, and what is watched."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from shipyard.cli._common import (
    as_option,
    console,
    handle_errors,
    open_runtime,
    print_json,
    timestamp,
    who,
)
from shipyard.service import incidents as list_incidents
from shipyard.service import monitors as list_monitors
from shipyard.service import resolve_incident

incident_app = typer.Typer(help="Close an incident a monitor opened.", no_args_is_help=True)


def recovered_in(seconds: float | None) -> str:
    """A time to recover as people read it (1.2 s, 3 min 4 s, 2 h 5 min)."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


@handle_errors
def incidents(
    ctx: typer.Context,
    open_only: bool = typer.Option(False, "--open", help="Only the open ones."),
    target: str = typer.Option("", "--target", help="Only this target's."),
    limit: int = typer.Option(20, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Incidents the monitors opened on live paths, newest first, with their time to recover."""
    with open_runtime(ctx) as rt:
        found = list_incidents(rt, state="open" if open_only else "", target=target, limit=limit)
    if as_json:
        print_json(found)
        return
    if not found:
        console.print("no open incidents" if open_only else "no incidents")
        return
    table = Table(
        "id", "detected", "target", "path", "task", "cause", "action", "state", "recovered in",
        title="incidents (newest first)",
    )  # fmt: skip
    for incident in found:
        table.add_row(
            f"#{incident['id']}",
            timestamp(incident["detected_at"]),
            incident["target"],
            incident["path"],
            incident["task"],
            incident["cause"],
            incident["action"],
            f"[{'red' if incident['state'] == 'open' else 'green'}]{incident['state']}[/]",
            recovered_in(incident["time_to_recover_s"]),
        )
    console.print(table)
    for incident in found:
        console.print(f"  #{incident['id']}: {incident['reason']}", highlight=False, markup=False)
        if incident["resolution"]:
            console.print(
                f"    resolved by {incident['resolved_by']} at "
                f"{timestamp(incident['resolved_at'])}: {incident['resolution']}",
                highlight=False,
                markup=False,
            )


@incident_app.command("resolve")
@handle_errors
def resolve(
    ctx: typer.Context,
    incident: int = typer.Argument(..., help="The incident's number (`shipyard incidents`)."),
    note: str = typer.Option(..., "--note", help="What was done about it."),
    as_: str | None = as_option("Resolve"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Close an open incident (an alert you dealt with), saying what was done."""
    with open_runtime(ctx) as rt:
        done = resolve_incident(rt, incident, actor=who(rt, as_, need="operate").name, note=note)
    if as_json:
        print_json(done)
        return
    console.print(
        f"incident #{done['id']} on {done['target']} {done['path']}: resolved by "
        f"{done['resolved_by']} after {recovered_in(done['time_to_recover_s'])}",
        highlight=False,
    )


def _path_line(path: str, state: dict[str, Any]) -> str:
    window = state.get("window") or {}
    baseline = state.get("baseline") or {}
    numbers = ""
    if window:
        numbers = (
            f" window {window['requests']} req · {window['error_rate']:.1%} 5xx; "
            f"baseline {baseline.get('requests', 0)} req · {baseline.get('error_rate', 0):.1%} 5xx"
        )
    reasons = "; ".join(state.get("reasons", []))
    return f"  {path} ({state.get('task', '')}): {state.get('outcome', '')}{numbers}: {reasons}"


@handle_errors
def monitors(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """What each target's monitor watches, and what its last round found on each live path."""
    with open_runtime(ctx) as rt:
        found = list_monitors(rt)
    if as_json:
        print_json(found)
        return
    if not found:
        console.print("no monitors yet: a target's monitor starts when something goes live on it")
        return
    for monitor in found:
        settings = (
            f"on_anomaly = {monitor['on_anomaly']}, a round every {monitor['interval_seconds']:g} s"
            if monitor["on_anomaly"]
            else "not watched (disabled in shipyard.toml)"
        )
        console.print(
            f"[bold]{monitor['target']}[/]: {monitor['state']} ({settings}); last round "
            f"{timestamp(monitor['checked_at'])}: {monitor['note']}",
            highlight=False,
        )
        for path, state in sorted(monitor["paths"].items()):
            console.print(_path_line(path, state), highlight=False, markup=False)
