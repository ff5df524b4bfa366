"""``shipyard status``, ``list`` and ``show``: what is happening, and one task's whole story."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from shipyard.cli._common import (
    console,
    handle_errors,
    open_records,
    print_json,
    state_style,
    timestamp,
)
from shipyard.errors import StateError
from shipyard.model import CheckReport, Finding
from shipyard.service import count_by_state, list_tasks, story_dict, task_dict, task_story

if TYPE_CHECKING:
    from shipyard.service import TaskStory


@handle_errors
def status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Tasks by state, and how many wait for a person."""
    with open_records(ctx) as rt:
        counts = count_by_state(rt)
        waiting = list_tasks(rt, states=["waiting_approval"])
    if as_json:
        print_json({"states": counts, "waiting_approval": [t.id for t in waiting]})
        return
    table = Table("state", "tasks", title="tasks by state")
    for state, count in sorted(counts.items()):
        table.add_row(state_style(state), str(count))
    console.print(table)
    if waiting:
        console.print(f"{len(waiting)} task(s) wait for approval: `shipyard approvals`")
    if counts.get("waiting_input"):
        console.print(
            f"{counts['waiting_input']} task(s) wait for a person's code: "
            "`shipyard show TASK --prompt`, then `shipyard provide`"
        )
    if counts.get("paused"):
        console.print(f"{counts['paused']} task(s) paused on a budget: `shipyard budget`")


@handle_errors
def list_(
    ctx: typer.Context,
    state: list[str] = typer.Option([], "--state", "-s", help="Only these states."),
    job: str = typer.Option("", "--job", help="Only this job kind."),
    batch: str = typer.Option("", "--batch", help="Only this batch."),
    limit: int = typer.Option(200, "--limit"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Tasks, oldest first."""
    with open_records(ctx) as rt:
        tasks = list_tasks(rt, states=state, job_kind=job, batch_id=batch, limit=limit)
    if as_json:
        print_json([task_dict(t) for t in tasks])
        return
    table = Table("task", "job kind", "key", "state", "att.", "submitted", "source / error")
    for t in tasks:
        note = t.error.splitlines()[0][:120] if t.error else t.source
        table.add_row(
            t.id,
            t.job_kind,
            t.input_key,
            state_style(t.state),
            str(t.attempts),
            timestamp(t.submitted_at),
            note,
        )
    console.print(table)


@handle_errors
def show(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id (or a unique prefix)."),
    as_json: bool = typer.Option(False, "--json"),
    prompt: bool = typer.Option(
        False, "--prompt", help="Print only the latest attempt's prompt (what a person answers)."
    ),
) -> None:
    """One task's whole story: inputs, steps, attempts (tier, route, cost, findings), release."""
    with open_records(ctx) as rt:
        story = task_story(rt, task)
    if prompt:
        if not story.attempts:
            raise StateError(
                f"task {story.task.id} has no attempt yet",
                hint="its prompt is rendered when a worker generates the first attempt",
            )
        typer.echo(story.attempts[-1].prompt)
        return
    if as_json:
        print_json(story_dict(story))
        return
    t = story.task
    console.print(f"[bold]task {t.id}[/]  {state_style(t.state)}")
    console.print(
        f"  {t.job_kind} for [bold]{t.input_key or '?'}[/] in domain {t.domain}; "
        f"submitted by {t.submitted_by} at {timestamp(t.submitted_at)} from {t.source}"
    )
    if t.error:
        console.print("  " + escape(t.error).replace("\n", "\n  "), style="red", highlight=False)
    console.print(
        "  inputs: " + ", ".join(f"{k}={v!r}" for k, v in t.inputs.items()), highlight=False
    )
    if story.steps:
        console.print(_steps_table(story))
    for attempt in story.attempts:
        console.print(_attempt_tree(attempt, story.memories))
    if story.attempts:
        spent = sum(a.cost_usd for a in story.attempts)
        used = sum(a.input_tokens + a.output_tokens for a in story.attempts)
        console.print(f"  cost: ${spent:.6f} over {len(story.attempts)} attempt(s), {used} tokens")
    for d in story.decisions:
        console.print(
            f"  decision: [bold]{d.decision}[/] by {d.actor} at {timestamp(d.decided_at)}"
            + (f" — {d.reason}" if d.reason else ""),
            highlight=False,
        )
    if story.provenance:
        p = story.provenance.record
        console.print(
            f"  artifact {p['artifact']}\n    template {p['template_hash']}"
            f"  prompt {p['prompt_hash']}\n    inputs {p['inputs_hash']}"
        )
    if story.release:
        r = story.release
        stages = " → ".join(f"{w:g}%" for w in (r.plan or {}).get("stages", []))
        console.print(
            f"  release: {r.state} on {r.target} at {r.path} (version {r.version}, "
            f"{timestamp(r.released_at)})" + (f"; canary {stages}" if stages else ""),
            highlight=False,
        )
        if r.reason:
            console.print(f"    {r.reason}", highlight=False, markup=False)


def _steps_table(story: TaskStory) -> Table:
    table = Table("stage", "att.", "status", "runs", "started", "ms", "result", title="steps")
    for s in story.steps:
        ms = (s.finished_at - s.started_at).total_seconds() * 1000 if s.finished_at else None
        table.add_row(
            s.stage,
            str(s.attempt or ""),
            s.status,
            str(s.runs),
            timestamp(s.started_at),
            f"{ms:.0f}" if ms is not None else "-",
            s.summary,
        )
    return table


def _attempt_tree(attempt: Any, memories: dict[str, Any]) -> Tree:
    verdict = {True: "[green]passed[/]", False: "[red]failed[/]", None: "[dim]not checked[/]"}
    used = attempt.input_tokens or attempt.output_tokens
    tokens = (
        f", {attempt.input_tokens}+{attempt.output_tokens} tokens, "
        f"${attempt.cost_usd:.6f} ({attempt.cost_source})"
        if used
        else ""
    )
    if attempt.tier == "human" and not attempt.files:
        verdict[None] = "[yellow]waiting for a person's code[/] (shipyard provide)"
    tree = Tree(
        f"attempt {attempt.number}: tier [bold]{attempt.tier or '?'}[/] — {attempt.provider} / "
        f"{escape(attempt.model) or '-'} — {verdict[attempt.passed]}  "
        f"(prompt {attempt.prompt_hash[:19]}{tokens})"
    )
    if attempt.route:
        route = tree.add("route")
        for note in attempt.route.splitlines():
            route.add(escape(note))
    if attempt.recalled:
        recalled = tree.add(f"recalled {len(attempt.recalled)} item(s)")
        for ident in attempt.recalled:
            row = memories.get(ident)
            text = f"{row.kind}: {row.text[:110]}" if row is not None else "(purged since)"
            recalled.add(escape(f"{ident} {text}"))
    if attempt.feedback:
        fed = tree.add(f"{len(attempt.feedback)} finding(s) fed back from the previous attempt")
        for f in [Finding.from_dict(item) for item in attempt.feedback][:10]:
            fed.add(escape(f"{f.rule} {f.location()} {f.message}"))
    if attempt.report:
        report = CheckReport.from_dict(attempt.report)
        checks = tree.add(f"checks (sandbox: {report.sandbox})")
        for note in report.notes:
            checks.add(f"[yellow]{note}[/]")
        for result in report.results:
            node = checks.add(
                f"{'[green]✓[/]' if result.passed else '[red]✗[/]'} {result.check} "
                f"({result.duration_ms:.0f} ms)"
            )
            for f in result.findings[:10]:
                node.add(escape(f"{f.rule} {f.location()} {f.message}"))
    if "change.patch" in (attempt.files or {}):
        _change_tree(tree, attempt)
    return tree


def _change_tree(tree: Tree, attempt: Any) -> None:
    """A repository change: its test results, then its diff by file with the findings at
    their lines."""
    record = dict(attempt.change or {})
    facts = record.get("facts") or {}
    if facts and facts.get("tests_passed", -1) >= 0:
        tree.add(
            f"tests: {facts['tests_passed']} passed, {facts.get('tests_failed', 0)} failed"
            + (f", {facts['tests_skipped']} skipped" if facts.get("tests_skipped", 0) > 0 else "")
        )
    if facts.get("new_dependencies"):
        tree.add("[yellow]new dependencies:[/] " + escape(", ".join(facts["new_dependencies"])))
    from shipyard.repos import file_diffs  # a repository change's tooling, for these alone

    findings = CheckReport.from_dict(attempt.report).findings if attempt.report else []
    diffs = file_diffs(str(attempt.files["change.patch"]), findings)
    node = tree.add(f"change: {len(diffs)} file(s)")
    styles = {"added": "green", "removed": "red", "hunk": "cyan", "context": "", "note": "dim"}
    marks = {"added": "+", "removed": "-", "context": " ", "hunk": "", "note": ""}
    for diff in diffs:
        kind = "binary " if diff.binary else ""
        branch = node.add(f"{diff.path} ({kind}{diff.status}, +{diff.added} -{diff.removed})")
        for line in diff.lines[:400]:
            style = styles[line.kind]
            text = escape(marks[line.kind] + line.text)
            branch.add(f"[{style}]{text}[/]" if style else text)
            for f in line.findings:
                branch.add(f"[red]  ^ {escape(f.rule)}: {escape(f.message)}[/]")
        if len(diff.lines) > 400:
            branch.add(f"[dim]... {len(diff.lines) - 400} more line(s)[/]")
        for f in diff.findings:
            branch.add(f"[red]{escape(f.rule)} {escape(f.location())}: {escape(f.message)}[/]")
