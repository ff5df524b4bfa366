"""``shipyard lineage``: where an artifact came from, where it went, and recall queries."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from shipyard.cli._common import console, handle_errors, open_runtime, print_json
from shipyard.errors import InputError
from shipyard.service import lineage as lineage_of
from shipyard.service import openlineage_events, produced_with


@handle_errors
def lineage(
    ctx: typer.Context,
    ref: str = typer.Argument("", help="An artifact id (or prefix) or a task id."),
    prompt: str = typer.Option("", "--prompt", help="Everything made with this prompt hash."),
    model: str = typer.Option("", "--model", help="Everything made with this model."),
    template: str = typer.Option("", "--template", help="... with this template version."),
    as_json: bool = typer.Option(False, "--json"),
    openlineage: bool = typer.Option(
        False, "--openlineage", help="OpenLineage run events (JSON Lines) for the artifact."
    ),
) -> None:
    """An artifact's history back to prompt, model, inputs, memories, checks and approvals,
    and forward to its releases; or, with --prompt/--model/--template, what they produced."""
    if bool(ref) == bool(prompt or model or template):
        raise InputError(
            "name an artifact or task, or query with --prompt / --model / --template",
            hint="e.g. shipyard lineage t-20261123-ab12cd34, or shipyard lineage --model gpt-x",
        )
    with open_runtime(ctx) as rt:
        if not ref:
            _recall(produced_with(rt, prompt=prompt, model=model, template=template), as_json)
            return
        if openlineage:
            for event in openlineage_events(rt, ref):
                typer.echo(json.dumps(event))
            return
        story = lineage_of(rt, ref)
    if as_json:
        print_json(story)
        return
    console.print(_tree(story))


def _recall(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    table = Table("task", "artifact", "job kind", "key", "state", "release", "attempts",
                  title=f"{len(rows)} task(s)")  # fmt: skip
    for r in rows:
        table.add_row(
            r["task"],
            r["artifact"].removeprefix("sha256:")[:16],
            r["job_kind"],
            r["input_key"],
            r["state"],
            r["release"] or "-",
            ", ".join(str(n) for n in r["attempts"]),
        )
    console.print(table)


def _tree(story: dict[str, Any]) -> Tree:
    a = story["artifact"]
    live = ", ".join(story["live_on"]) or "nowhere"
    root = Tree(
        f"[bold]artifact {a['id']}[/]\n{a['job_kind']} for {escape(a['input_key'])}; "
        f"{len(a['files'])} file(s), {a['size']} bytes; live on {live}"
    )
    for t in story["tasks"]:
        node = root.add(
            f"[bold]task {t['task']}[/] ({t['state']}) submitted by {escape(t['submitted_by'])} "
            f"at {t['submitted_at']}" + ("" if t["signed"] else " [red](provenance not signed)[/]")
        )
        inputs = node.add(f"inputs {t['inputs_hash'][:23]}")
        for key, value in t["inputs"].items():
            inputs.add(escape(f"{key} = {value!r}"))
        node.add(f"templates {t['template_hash'][:23]}   prompt {t['prompt_hash'][:23]}")
        for m in t["memories"]:
            node.add(escape(f"recalled memory {m['id']} ({m['kind']}): {m['text'][:100]}"))
        attempts = node.add(f"{len(t['attempts'])} attempt(s)")
        for at in t["attempts"]:
            verdict = {True: "[green]passed[/]", False: "[red]failed[/]", None: "not checked"}
            line = attempts.add(
                f"attempt {at['number']}: tier {at['tier']} — {at['provider']} / "
                f"{escape(at['model'])} — {verdict[at['passed']]}; "
                f"prompt {at['prompt_hash'][:19]}; "
                f"{at['tokens'][0]}+{at['tokens'][1]} tokens, ${at['cost_usd']}"
                + (
                    f"; {at['findings_fed_back']} finding(s) fed back"
                    if at["findings_fed_back"]
                    else ""
                )
            )
            for c in at["checks"]:
                mark = "[green]✓[/]" if c["passed"] else "[red]✗[/]"
                line.add(f"{mark} {c['check']} ({c['findings']} finding(s))")
        for d in t["decisions"]:
            node.add(
                escape(
                    f"{d['decision']} by {d['actor']} at {d['at']}"
                    + (f": {d['reason']}" if d["reason"] else "")
                )
            )
        for r in t["releases"]:
            node.add(
                f"release: {r['state']} on {r['target']} at {r['path']} (version {r['version']}, "
                f"{r['released_at']})"
                + (f", rolled back {r['rolled_back_at']}" if r["rolled_back_at"] else "")
            )
    return root
