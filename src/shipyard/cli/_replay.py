"""``shipyard replay``: recorded tasks re-run under a candidate configuration, in simulation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import typer
from rich.table import Table

from shipyard.cli._common import (
    as_option,
    atomic_text,
    console,
    handle_errors,
    open_runtime,
    print_json,
    who,
)
from shipyard.errors import InputError
from shipyard.observe import parse_window
from shipyard.replay import STEPS, Candidate, Selection, Thresholds, render_html, run_replay


@handle_errors
def replay(
    ctx: typer.Context,
    tasks: list[str] = typer.Argument(None, help="Recorded tasks (ids or unique prefixes)."),
    since: str = typer.Option("", "--since", help="Tasks submitted in this window (24h, 7d)."),
    job: str = typer.Option("", "--job", help="Only this job kind."),
    domain: str = typer.Option("", "--domain", help="Only this domain."),
    state: list[str] = typer.Option([], "--state", help="Only tasks that ended so (repeatable)."),
    limit: int = typer.Option(200, "--limit", min=1, help="At most this many tasks."),
    config: Path | None = typer.Option(None, "--config", help="The candidate's shipyard.toml."),
    policy: list[Path] = typer.Option(
        [], "--policy", help="Candidate policy files, replacing the config's (repeatable)."
    ),
    from_step: str = typer.Option(
        "verify", "--from-step", help="generate (write the code again), verify, or gate."
    ),
    regenerate: bool = typer.Option(
        False, "--regenerate", help="Same as --from-step generate: the candidate writes the code."
    ),
    max_usd: str = typer.Option("", "--max-usd", help="Spend cap for --regenerate (US$)."),
    fail_on_regression: bool = typer.Option(
        False, "--fail-on-regression", help="Exit 1 when the thresholds below are broken."
    ),
    max_pass_drop: float = typer.Option(0.0, "--max-pass-drop", min=0, max=1),
    max_newly_allowed_high: int = typer.Option(0, "--max-newly-allowed-high", min=0),
    max_newly_denied: int = typer.Option(0, "--max-newly-denied", min=0),
    max_cost_increase: float = typer.Option(0.10, "--max-cost-increase", min=0),
    out: Path | None = typer.Option(None, "--out", help="Write the report as JSON here."),
    html_out: Path | None = typer.Option(None, "--html", help="Write the report as a web page."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    as_: str | None = as_option("Run it"),
) -> None:
    """Re-run recorded tasks under another config, policy, prompt, model or check set, in
    simulation (no effect leaves Shipyard, no live record changes), and report every change."""
    step = "generate" if regenerate else from_step
    if step not in STEPS:
        raise InputError(f"--from-step {step!r}", hint=f"one of: {', '.join(STEPS)}")
    cap = None
    if max_usd:
        try:
            cap = Decimal(max_usd)
        except InvalidOperation as exc:
            raise InputError(f"--max-usd {max_usd!r} is not an amount", hint="e.g. 0.50") from exc
        if not cap.is_finite() or cap < 0:
            raise InputError(f"--max-usd {max_usd!r} is not an amount", hint="e.g. 0.50")
    selection = Selection(
        tasks=tuple(tasks or ()),
        since=datetime.now(UTC) - parse_window(since) if since else None,
        job_kind=job,
        domain=domain,
        states=tuple(state),
        limit=limit,
    )
    thresholds = Thresholds(
        max_pass_drop=max_pass_drop,
        max_newly_allowed_high=max_newly_allowed_high,
        max_cost_increase=max_cost_increase,
        max_newly_denied=max_newly_denied,
    )
    with open_runtime(ctx) as rt:
        report = run_replay(
            rt,
            Candidate(config=config, policy_files=tuple(policy)),
            selection,
            from_step=step,
            max_usd=cap,
            thresholds=thresholds,
            actor=who(rt, as_, need="operate").name,
        )
    if out is not None:
        with atomic_text(out) as handle:
            json.dump(report, handle, indent=1, default=str)
    if html_out is not None:
        with atomic_text(html_out) as handle:
            handle.write(render_html(report))
    if as_json:
        print_json(report)
    else:
        _print(report)
    if fail_on_regression and report["regressions"]:
        raise typer.Exit(1)


def _print(report: dict[str, object]) -> None:
    tasks = report["tasks"]
    assert isinstance(tasks, list)
    table = Table(
        "task", "job", "subject", "checks", "gate", "attempts", "cost", "changes",
        title=f"replay {report['id']} from {report['from_step']}",
    )  # fmt: skip
    for t in tasks:
        b, a = t["before"], t["after"]
        mark = {True: "pass", False: "fail", None: "-"}
        table.add_row(
            t["task_id"],
            t["job_kind"],
            t["input_key"],
            f"{mark[b['passed']]} → {mark[a['passed']]}",
            f"{b['gate']} → {a['gate']}",
            f"{b['attempts']} → {a['attempts']}",
            f"${b['cost_usd']:.4f} → ${a['cost_usd']:.4f}",
            ", ".join(t["changes"]) or "same",
            style="red" if t["regression"] else None,
        )
    console.print(table)
    summary = report["summary"]
    assert isinstance(summary, dict)
    rates = [
        "-" if r is None else f"{r:.0%}"
        for r in (summary["pass_rate_before"], summary["pass_rate_after"])
    ]
    console.print(
        f"{summary['tasks']} task(s); pass rate {rates[0]} → {rates[1]}; "
        + (", ".join(f"{n} {c}" for c, n in sorted(summary["changes"].items())) or "no change"),
        highlight=False,
    )
    regressions = report["regressions"]
    assert isinstance(regressions, list)
    for line in regressions:
        console.print(f"[red]regression:[/] {line}", highlight=False)
    if not regressions:
        console.print("no regression beyond the thresholds", highlight=False)
    console.print(f"recorded as replay {report['id']} (no live record was changed)")
