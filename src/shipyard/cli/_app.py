"""The ``shipyard`` command: one Typer app, one module per command group."""

from __future__ import annotations

from pathlib import Path

import typer

from shipyard import __version__
from shipyard.cli import (
    _approvals,
    _artifacts,
    _audit,
    _budget,
    _change,
    _incidents,
    _init,
    _lineage,
    _memory,
    _notifications,
    _policy,
    _provide,
    _release,
    _replay,
    _sandbox,
    _serve,
    _stats,
    _submit,
    _tasks,
    _tokens,
    _trace,
    _worker,
)

app = typer.Typer(
    name="shipyard",
    help="Shipyard: validate, sandbox, check, approve, store and release generated code.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"shipyard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    project: Path | None = typer.Option(
        None, "--project", "-C", help="Project folder (default: found from the current folder)."
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True),
) -> None:
    ctx.obj = {"project": str(project) if project else None}


app.command("init")(_init.init)
app.command("submit")(_submit.submit)
app.command("change")(_change.change)
app.command("worker")(_worker.worker)
app.command("workers")(_worker.workers)
app.command("status")(_tasks.status)
app.command("list")(_tasks.list_)
app.command("show")(_tasks.show)
app.command("approvals")(_approvals.approvals)
app.command("approve")(_approvals.approve)
app.command("reject")(_approvals.reject)
app.command("provide")(_provide.provide)
app.command("resume")(_provide.resume)
app.command("budget")(_budget.budget)
app.add_typer(_artifacts.artifacts_app, name="artifacts")
app.command("lineage")(_lineage.lineage)
app.command("trace")(_trace.trace)
app.command("stats")(_stats.stats)
app.command("gc")(_stats.gc)
app.command("rollback")(_release.rollback)
app.command("releases")(_release.releases)
app.add_typer(_release.release_app, name="release")
app.command("incidents")(_incidents.incidents)
app.add_typer(_incidents.incident_app, name="incident")
app.command("monitors")(_incidents.monitors)
app.command("serve")(_serve.serve)
app.command("check")(_sandbox.check)
app.add_typer(_sandbox.sandbox_app, name="sandbox")
app.command("replay")(_replay.replay)
app.add_typer(_policy.policy_app, name="policy")
app.add_typer(_audit.audit_app, name="audit")
app.add_typer(_tokens.tokens_app, name="tokens")
app.add_typer(_memory.memory_app, name="memory")
app.add_typer(_notifications.notifications_app, name="notifications")
