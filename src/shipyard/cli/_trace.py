"""``shipyard trace``: a task's spans as a tree, or as OTLP JSON for any collector."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import typer
from rich.markup import escape
from rich.tree import Tree

from shipyard.cli._common import console, handle_errors, open_runtime
from shipyard.errors import NotFound
from shipyard.observe import otlp_json
from shipyard.service import task_trace
from shipyard.store import SpanRow


@handle_errors
def trace(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id (or a unique prefix)."),
    otlp: bool = typer.Option(False, "--otlp-json", help="Write OTLP JSON instead of a tree."),
) -> None:
    """A task's trace: stages, attempts, model calls, checks and tool calls, with durations,
    tokens and cost."""
    with open_runtime(ctx) as rt:
        found = task_trace(rt, task)
        project = rt.project.settings.project.name
    row, spans, cost = found.task, found.spans, found.cost
    if not spans:
        raise NotFound(
            f"task {row.id} has no spans",
            hint="tracing may be off ([observe] tracing), or the spans expired (shipyard gc)",
        )
    if otlp:
        typer.echo(json.dumps(otlp_json(spans, project=project)))
        return
    console.print(_tree(row.id, spans, cost))


def _label(span: SpanRow, cost: dict[int, Decimal]) -> str:
    ms = (span.end_ns - span.start_ns) / 1e6
    a = span.attributes
    parts = [f"[bold]{escape(span.name)}[/]", f"{ms:,.1f} ms"]
    if "gen_ai.usage.input_tokens" in a:
        parts.append(
            f"{a['gen_ai.usage.input_tokens']}+{a.get('gen_ai.usage.output_tokens', 0)} tokens"
        )
    attempt = a.get("shipyard.attempt")
    if span.name.startswith("generate") and isinstance(attempt, int) and attempt in cost:
        parts.append(f"${cost[attempt]:.6f}")
    if "shipyard.check.passed" in a:
        parts.append(
            "[green]passed[/]"
            if a["shipyard.check.passed"]
            else f"[red]{a.get('shipyard.check.findings', 0)} finding(s)[/]"
        )
    if span.status == "ERROR":
        parts.append("[red]error[/]")
    summary = str(a.get("shipyard.summary", ""))
    if summary:
        parts.append(f"[dim]{escape(summary[:90])}[/]")
    return "  ".join(parts)


def _tree(task_id: str, spans: Sequence[SpanRow], cost: dict[int, Decimal]) -> Tree:
    by_parent: dict[str, list[SpanRow]] = {}
    ids = {s.span_id for s in spans}
    for span in spans:
        by_parent.setdefault(span.parent_id if span.parent_id in ids else "", []).append(span)
    roots = by_parent.get("", [])
    tree = Tree(f"trace of task {task_id}")

    def add(node: Any, span: SpanRow) -> None:
        child = node.add(_label(span, cost))
        for event in span.events:
            if event["name"].startswith("gen_ai.content"):
                text = str(event["attributes"].get("content", ""))
                preview = escape(" ".join(text.split())[:100])
                child.add(f"[dim]{event['name']}: {preview}…[/]")
        for below in by_parent.get(span.span_id, []):
            add(child, below)

    for root in roots:
        add(tree, root)
    return tree
