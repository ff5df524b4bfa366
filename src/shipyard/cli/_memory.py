"""``shipyard memory``: search, add, export/import, expire and re-embed what Shipyard remembers."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from shipyard.cli._common import (
    atomic_text,
    console,
    err_console,
    handle_errors,
    open_runtime,
    print_json,
)
from shipyard.service import (
    add_memory,
    export_memory,
    import_memory,
    purge_memory,
    reindex_memory,
    search_memory,
    session_state,
)

memory_app = typer.Typer(help="What the pipeline remembers and recalls.", no_args_is_help=True)


@memory_app.command("search")
@handle_errors
def search(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="What to look for (by meaning and by words)."),
    namespace: list[str] = typer.Option([], "--namespace", "-n", help="Default: all."),
    job: str = typer.Option("", "--job", help="Only this job kind's items."),
    tag: list[str] = typer.Option([], "--tag", help="Only items with every one of these tags."),
    k: int = typer.Option(10, "--k", min=1, max=200, help="How many."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Hybrid search, as recall does it (threshold, freshness, expiry applied)."""
    with open_runtime(ctx) as rt:
        hits = search_memory(rt, query, namespaces=namespace, job_kind=job, tags=tag, k=k)
    if as_json:
        print_json([h.to_dict() for h in hits])
        return
    table = Table(
        "id", "ns", "kind", "job kind", "similarity", "by", "text", title=f"{len(hits)} hit(s)"
    )
    for h in hits:
        table.add_row(
            str(h.id), h.namespace, h.kind, h.job_kind, f"{h.similarity:.2f}",
            "+".join(h.found_by), h.text[:120],
        )  # fmt: skip
    console.print(table)


@memory_app.command("add")
@handle_errors
def add(
    ctx: typer.Context,
    text: str = typer.Argument(..., help="What to remember (e.g. a correction)."),
    namespace: str = typer.Option("global", "--namespace", "-n"),
    kind: str = typer.Option("note", "--kind"),
    job: str = typer.Option("", "--job", help="The job kind it is about."),
    key: str = typer.Option("", "--key", help="The subject (input key) it is about."),
    tag: list[str] = typer.Option([], "--tag"),
    ttl_days: float | None = typer.Option(None, "--ttl-days", help="Expire after this long."),
) -> None:
    """Remember something by hand (a person's correction, a rule of thumb)."""
    with open_runtime(ctx) as rt:
        row = add_memory(
            rt, text, namespace=namespace, kind=kind, job_kind=job, input_key=key, tags=tag,
            ttl_days=ttl_days,
        )  # fmt: skip
    console.print(f"remembered as {row}")


@memory_app.command("export")
@handle_errors
def export(
    ctx: typer.Context,
    output: Path | None = typer.Option(None, "--output", "-o", help="File (default: stdout)."),
    namespace: list[str] = typer.Option([], "--namespace", "-n"),
) -> None:
    """Items as JSON Lines, with their embedder, dimension, vector and lineage fields."""
    with open_runtime(ctx) as rt:
        lines = export_memory(rt, namespaces=namespace)
        if output is None:
            for line in lines:
                sys.stdout.write(line + "\n")
            return
        count = 0
        with atomic_text(output) as out:
            for line in lines:
                out.write(line + "\n")
                count += 1
    err_console.print(f"{count} item(s) written to {output}")


@memory_app.command("import")
@handle_errors
def import_(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="A JSONL file from `shipyard memory export`."),
    reembed: bool = typer.Option(
        False, "--reembed", help="Embed again with this project's embedder if theirs differs."
    ),
) -> None:
    """Import items, all or nothing: a bad line names itself and nothing is written."""
    with open_runtime(ctx) as rt:
        count = import_memory(rt, source, reembed=reembed)
    console.print(f"{count} item(s) imported from {source}")


@memory_app.command("gc")
@handle_errors
def gc(ctx: typer.Context) -> None:
    """Purge expired items (they are never recalled, even before this runs)."""
    with open_runtime(ctx) as rt:
        count = purge_memory(rt)
    console.print(f"{count} expired item(s) purged")


@memory_app.command("reindex")
@handle_errors
def reindex(ctx: typer.Context) -> None:
    """Re-embed every item not embedded by the configured embedder."""
    with open_runtime(ctx) as rt:
        count = reindex_memory(rt)
    console.print(f"{count} item(s) re-embedded with {rt.memory.embedder.name}")


@memory_app.command("session")
@handle_errors
def session(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id (or a unique prefix)."),
) -> None:
    """A task's working state: where it is, its latest attempt, what it recalled, what failed."""
    with open_runtime(ctx) as rt:
        state = session_state(rt, task)
    print_json(state)
