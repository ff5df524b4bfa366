"""``shipyard budget``: spend against every limit, and where the money went."""

from __future__ import annotations

from decimal import Decimal

import typer
from rich.table import Table

from shipyard.cli._common import console, handle_errors, open_runtime, print_json
from shipyard.service import budget_report


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


@handle_errors
def budget(
    ctx: typer.Context,
    days: int = typer.Option(7, "--days", min=1, max=366, help="Days of spend to roll up."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Spend against each budget today, then spend per job kind, domain and day."""
    with open_runtime(ctx) as rt:
        report = budget_report(rt, days=days)
    if as_json:
        print_json(report.to_dict())
        return
    limits = Table(
        "budget", "spent", "limit", "tokens", "token limit", "paused tasks", title="budgets"
    )
    for line in report.limits:
        limits.add_row(
            line.scope,
            _money(line.spent.usd),
            _money(line.usd),
            _count(line.spent.tokens),
            _count(line.tokens),
            str(line.paused) if line.paused else "",
            style="red" if line.exhausted else None,
        )
    console.print(limits)
    if not any(line.usd is not None or line.tokens is not None for line in report.limits):
        console.print(
            "  no limits set: add \\[budgets] (and domains' day_usd) to shipyard.toml",
            highlight=False,
        )
    for by, rows in report.rollups.items():
        table = Table(
            by.replace("_", " "),
            "attempts",
            "tokens in",
            "tokens out",
            "cost",
            "unpriced",
            title=f"spend per {by.replace('_', ' ')}, last {days} day(s)",
        )
        for row in rows:
            table.add_row(
                row.key,
                str(row.attempts),
                f"{row.input_tokens:,}",
                f"{row.output_tokens:,}",
                _money(row.usd),
                str(row.unpriced or ""),
            )
        console.print(table)
    if report.unpriced:
        console.print(
            f"  [yellow]{report.unpriced} attempt(s) used a model with no known price and count "
            "as $0[/]: add it to \\[prices] in shipyard.toml",
            highlight=False,
        )
