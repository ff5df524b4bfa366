"""``shipyard stats`` (the operating figures) and ``shipyard gc`` (retention)."""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.table import Table

from shipyard.cli._common import console, handle_errors, open_runtime, print_json
from shipyard.observe import parse_window
from shipyard.service import apply_retention, figures


@handle_errors
def stats(
    ctx: typer.Context,
    since: str = typer.Option("7d", "--since", help="Window ending now: 24h, 7d, 4w ..."),
    job: str = typer.Option("", "--job", help="Only this job kind."),
    domain: str = typer.Option("", "--domain", help="Only this domain."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The operating figures for tasks submitted in the window (see docs/observability.md)."""
    until = datetime.now(UTC)
    start = until - parse_window(since)
    with open_runtime(ctx) as rt:
        found = figures(rt, since=start, until=until, job_kind=job, domain=domain)
    if as_json:
        print_json(
            {
                "since": start.isoformat(),
                "until": until.isoformat(),
                "job_kind": job or None,
                "domain": domain or None,
                "figures": [f.to_dict() for f in found],
            }
        )
        return
    scope = " ".join(x for x in (job, domain) if x) or "all work"
    table = Table("figure", "value", "from", title=f"{scope}, last {since}")
    for f in found:
        if f.value is None:
            shown = "-"
        elif f.unit == "ratio":
            shown = f"{f.value:.1%}"
        elif f.unit == "USD":
            shown = f"${f.value:.6f}"
        elif f.unit == "s":
            shown = f"{f.value:,.1f} s"
        else:
            shown = f"{f.value:,.0f}"
        table.add_row(f.name, shown, f.basis)
    console.print(table)


@handle_errors
def gc(ctx: typer.Context) -> None:
    """Apply retention: spans (with the prompts and replies in them), the gateway's traffic
    samples of finished releases and delivered notifications older than [observe]
    retention_days, and expired memory. Records, verdicts, aggregates and notifications not
    delivered (pending or dead) stay."""
    with open_runtime(ctx) as rt:
        done = apply_retention(rt)
    console.print(
        f"{done.spans} span(s), {done.samples} traffic sample(s) and {done.notifications} "
        f"delivered notification(s) older than {done.days} days removed; {done.memories} "
        "expired memory item(s) purged"
    )
