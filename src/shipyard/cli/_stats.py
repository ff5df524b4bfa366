"""``shipyard stats`` (the operating figures) and ``shipyard gc`` (retention)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import typer
from rich.table import Table
from sqlalchemy import delete, select

from shipyard.cli._common import console, handle_errors, open_runtime, print_json
from shipyard.observe import operating_figures, parse_window
from shipyard.orchestrator import _memory as memory
from shipyard.store import ReleaseRow, ReleaseSampleRow, SpanRow, transaction


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
    with open_runtime(ctx) as rt, rt.sessions() as session:
        figures = operating_figures(
            session,
            since=start,
            until=until,
            job_kind=job,
            domain=domain,
            sla_minutes=rt.project.settings.observe.sla_minutes,
        )
    if as_json:
        print_json(
            {
                "since": start.isoformat(),
                "until": until.isoformat(),
                "job_kind": job or None,
                "domain": domain or None,
                "figures": [f.to_dict() for f in figures],
            }
        )
        return
    scope = " ".join(x for x in (job, domain) if x) or "all work"
    table = Table("figure", "value", "from", title=f"{scope}, last {since}")
    for f in figures:
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
    """Apply retention: spans (with the prompts and replies in them) and the gateway's traffic
    samples of finished releases older than [observe] retention_days, and expired memory.
    Records, verdicts and aggregates stay."""
    with open_runtime(ctx) as rt:
        days = rt.project.settings.observe.retention_days
        since = datetime.now(UTC) - timedelta(days=days)
        cutoff = int(since.timestamp() * 1e9)
        baking = select(ReleaseRow.task_id).where(ReleaseRow.state.in_(("canary", "paused")))
        with transaction(rt.sessions) as session:
            spans = session.execute(delete(SpanRow).where(SpanRow.end_ns < cutoff)).rowcount  # type: ignore[attr-defined]
            samples = session.execute(
                delete(ReleaseSampleRow).where(
                    ReleaseSampleRow.at < since, ReleaseSampleRow.task_id.not_in(baking)
                )
            ).rowcount  # type: ignore[attr-defined]
        purged = memory.purge(rt)
    console.print(
        f"{spans} span(s) and {samples} traffic sample(s) older than {days} days removed; "
        f"{purged} expired memory item(s) purged"
    )
