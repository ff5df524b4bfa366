"""``shipyard releases`` and ``shipyard release``: rollouts, their verdicts, and steering them;
``shipyard rollback``: switch a static site back to its previous version."""

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
    state_style,
    timestamp,
    who,
)
from shipyard.errors import InputError
from shipyard.service import Runtime, steer
from shipyard.service import releases as list_releases
from shipyard.service import rollback as rollback_target

release_app = typer.Typer(
    help="Steer a release's rollout: pause, resume, promote or roll back.",
    no_args_is_help=True,
)


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
    as_: str | None = as_option("Roll back"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Atomically switch a static site back to its previous version; records who and what left."""
    with open_runtime(ctx) as rt:
        result = rollback_target(
            rt, default_target(rt, target), actor=who(rt, as_, need="operate").name
        )
    if as_json:
        print_json(result)
        return
    console.print(
        f"{result['target']}: version {result['from_version']} -> {result['to_version']}; "
        f"{len(result['rolled_back_tasks'])} release(s) rolled back"
    )


def _stage(release: dict[str, Any]) -> str:
    stages = release["stages"]
    if not stages:
        return "at once"
    if release["state"] == "live":
        return f"{len(stages)}/{len(stages)} 100%"
    if release["stage"] < 0:
        return f"0/{len(stages)} 0%"
    weight = stages[release["stage"]] if release["state"] == "rolled_back" else release["weight"]
    return f"{release['stage'] + 1}/{len(stages)} {weight:g}%"


def _arm(verdict: dict[str, Any], name: str) -> str:
    """``requests · 5xx rate · p95`` of one arm."""
    arm = verdict.get(name)
    if not arm:
        return ""
    p95 = f"{arm['p95_ms']:.1f}ms" if arm["p95_ms"] is not None else "-"
    return f"{arm['requests']} · {arm['error_rate']:.1%} · {p95}"


@handle_errors
def releases(
    ctx: typer.Context,
    task: str = typer.Argument("", help="One release (its task id or a prefix): every stage."),
    target: str = typer.Option("", "--target"),
    state: str = typer.Option("", "--state", help="canary, paused, live, rolled_back ..."),
    limit: int = typer.Option(20, "--limit", min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Releases with their rollout stage, the latest canary numbers and time to recover."""
    with open_runtime(ctx) as rt:
        found = list_releases(rt, task=task, target=target, state=state, limit=limit)
    if as_json:
        print_json(found)
        return
    if not found:
        console.print("no releases" + (f" matching {task}" if task else ""))
        return
    if task:
        _one(found[0])
        return
    table = Table(
        "task", "job", "path", "state", "stage", "candidate", "baseline", "recovered",
        title="releases (requests · 5xx · p95 at the latest stage)",
    )  # fmt: skip
    for release in found:
        latest = release["verdicts"][-1] if release["verdicts"] else {}
        recovered = release["time_to_recover_ms"]
        table.add_row(
            release["task"],
            release["job_kind"],
            release["path"],
            state_style(release["state"]),
            _stage(release),
            _arm(latest, "candidate"),
            _arm(latest, "baseline"),
            f"{recovered:.0f} ms" if recovered is not None else "",
        )
    console.print(table)


def _one(release: dict[str, Any]) -> None:
    console.print(
        f"[bold]{release['task']}[/] {release['job_kind']} -> {release['target']} "
        f"{release['path']}: {state_style(release['state'])} "
        f"({_stage(release)})",
        highlight=False,
    )
    if release["reason"]:
        console.print(f"  reason: {release['reason']}", highlight=False, markup=False)
    console.print(
        f"  released {timestamp(release['released_at'])}"
        + (f", finished {timestamp(release['finished_at'])}" if release["finished_at"] else ""),
        highlight=False,
    )
    if release["time_to_recover_ms"] is not None:
        console.print(
            f"  rollback: detected {release['time_to_detect_s']} s into the stage; traffic all "
            f"on the baseline {release['time_to_recover_ms']:.0f} ms later",
            highlight=False,
        )
    table = Table(
        "stage", "verdict", "baked", "candidate", "baseline", "5xx +", "p95 ×", "probes",
        title="stages (requests · 5xx · p95; 5xx + and p95 × are lower confidence bounds)",
    )  # fmt: skip
    for verdict in release["verdicts"]:
        probes = verdict.get("probes") or {}
        ratio = verdict.get("p95_ratio")
        table.add_row(
            f"{verdict['weight']:g}%",
            verdict.get("outcome", ""),
            f"{verdict.get('elapsed_s', 0):g}s",
            _arm(verdict, "candidate"),
            _arm(verdict, "baseline"),
            f"≥{max(verdict['error_increase_low'], 0):.1%}"
            if "error_increase_low" in verdict
            else "",
            f"{ratio:.2f} (≥{verdict['p95_ratio_low']:.2f})" if ratio is not None else "",
            f"{probes.get('passed', 0)} ok / {probes.get('failed', 0)} failed" if probes else "",
        )
    console.print(table)
    for verdict in release["verdicts"]:
        for reason in verdict.get("reasons", []):
            console.print(f"  {verdict['weight']:g}%: {reason}", highlight=False, markup=False)


def _steer(ctx: typer.Context, task: str, command: str, as_: str | None, as_json: bool) -> None:
    with open_runtime(ctx) as rt:
        result = steer(rt, task, command, actor=who(rt, as_, need="operate").name)
    if as_json:
        print_json(result)
    elif result.get("queued"):
        console.print(
            f"{result['task']}: {command} recorded; the rollout acts on it at its next look"
        )
    else:
        console.print(
            f"{result['task']}: rolled back; live version now {result['version'] or 'none'}"
        )


_AS = as_option("Steer")
_JSON = typer.Option(False, "--json")


@release_app.command("pause")
@handle_errors
def pause(ctx: typer.Context, task: str, as_: str | None = _AS, as_json: bool = _JSON) -> None:
    """Hold the rollout at its stage (it stays paused across restarts)."""
    _steer(ctx, task, "pause", as_, as_json)


@release_app.command("resume")
@handle_errors
def resume(ctx: typer.Context, task: str, as_: str | None = _AS, as_json: bool = _JSON) -> None:
    """Go on with a paused rollout (its stage bakes again from now)."""
    _steer(ctx, task, "resume", as_, as_json)


@release_app.command("promote")
@handle_errors
def promote(ctx: typer.Context, task: str, as_: str | None = _AS, as_json: bool = _JSON) -> None:
    """Skip the remaining stages: the candidate takes all traffic."""
    _steer(ctx, task, "promote", as_, as_json)


@release_app.command("rollback")
@handle_errors
def rollback_release(
    ctx: typer.Context, task: str, as_: str | None = _AS, as_json: bool = _JSON
) -> None:
    """Roll a release back: a rollout's traffic returns to the baseline; a live one is withdrawn."""
    _steer(ctx, task, "rollback", as_, as_json)
