"""The ``shipyard`` command: one Typer app, one module per command group.

Every command is registered by name (:data:`COMMANDS`) and its module is imported only when
it runs, so a command imports only what it uses and ``shipyard --help`` imports none of them.
"""

from __future__ import annotations

from pathlib import Path

import typer

from shipyard import __version__
from shipyard.cli._lazy import Entry, LazyGroup

_CLI = "shipyard.cli."

COMMANDS: tuple[Entry, ...] = (
    Entry(
        name="init",
        target=_CLI + "_init:init",
        summary="Create shipyard.toml if there is none, then the state folder and the "
        "database schema.",
    ),
    Entry(
        name="submit",
        target=_CLI + "_submit:submit",
        summary="Validate inputs at the door and enqueue one task per valid row.",
    ),
    Entry(
        name="change",
        target=_CLI + "_change:change",
        summary="Submit GOAL as a change to REPO: generated, verified by the repository's own "
        "tests in the sandbox, approved, and released as the branch shipyard/<task id>.",
    ),
    Entry(
        name="worker",
        target=_CLI + "_worker:worker",
        summary="Run tasks until stopped, or with --until-idle until nothing is busy.",
    ),
    Entry(
        name="workers",
        target=_CLI + "_worker:workers",
        summary="Workers: their domains, last heartbeat, and the tasks each holds now.",
    ),
    Entry(
        name="status",
        target=_CLI + "_tasks:status",
        summary="Tasks by state, and how many wait for a person.",
    ),
    Entry(name="list", target=_CLI + "_tasks:list_", summary="Tasks, oldest first."),
    Entry(
        name="show",
        target=_CLI + "_tasks:show",
        summary="One task's whole story: inputs, steps, attempts (tier, route, cost, "
        "findings), release.",
    ),
    Entry(
        name="approvals",
        target=_CLI + "_approvals:approvals",
        summary="Tasks waiting for a person's decision: approvals given and needed, risk, "
        "escalation.",
    ),
    Entry(
        name="approve",
        target=_CLI + "_approvals:approve",
        summary="Approve waiting tasks; their workflows go on to release. Who you are is "
        "recorded, and each person counts once towards the approvals a task needs.",
    ),
    Entry(
        name="reject",
        target=_CLI + "_approvals:reject",
        summary="Reject waiting tasks: nothing is released, and the reason is remembered for "
        "next time.",
    ),
    Entry(
        name="provide",
        target=_CLI + "_provide:provide",
        summary="Supply the code for a task waiting for a person; it goes through the same checks.",
    ),
    Entry(
        name="resume",
        target=_CLI + "_provide:resume",
        summary="Let tasks paused on a budget go on (after raising it, or on a new day).",
    ),
    Entry(
        name="budget",
        target=_CLI + "_budget:budget",
        summary="Spend against each budget today, then spend per job kind, domain and day.",
    ),
    Entry(
        name="artifacts",
        target=_CLI + "_artifacts:artifacts_app",
        summary="Artifact versions: list (default), verify, diff, gc.",
    ),
    Entry(
        name="lineage",
        target=_CLI + "_lineage:lineage",
        summary="An artifact's history back to prompt, model, inputs, memories, checks and "
        "approvals, and forward to its releases; or, with --prompt/--model/--template, what "
        "they produced.",
    ),
    Entry(
        name="trace",
        target=_CLI + "_trace:trace",
        summary="A task's trace: stages, attempts, model calls, checks and tool calls, with "
        "durations, tokens and cost.",
    ),
    Entry(
        name="stats",
        target=_CLI + "_stats:stats",
        summary="The operating figures for tasks submitted in the window (see "
        "docs/observability.md).",
    ),
    Entry(
        name="gc",
        target=_CLI + "_stats:gc",
        summary="Apply retention: spans (with the prompts and replies in them), the gateway's "
        "traffic samples of finished releases and delivered notifications older than [observe] "
        "retention_days, and expired memory. Records, verdicts, aggregates and notifications "
        "not delivered (pending or dead) stay.",
    ),
    Entry(
        name="rollback",
        target=_CLI + "_release:rollback",
        summary="Atomically switch a static site back to its previous version; records who and "
        "what left.",
    ),
    Entry(
        name="releases",
        target=_CLI + "_release:releases",
        summary="Releases with their rollout stage, the latest canary numbers and time to recover.",
    ),
    Entry(
        name="release",
        target=_CLI + "_release:release_app",
        summary="Steer a release's rollout: pause, resume, promote or roll back.",
    ),
    Entry(
        name="incidents",
        target=_CLI + "_incidents:incidents",
        summary="Incidents the monitors opened on live paths, newest first, with their time to "
        "recover.",
    ),
    Entry(
        name="incident",
        target=_CLI + "_incidents:incident_app",
        summary="Close an incident a monitor opened.",
    ),
    Entry(
        name="monitors",
        target=_CLI + "_incidents:monitors",
        summary="What each target's monitor watches, and what its last round found on each "
        "live path.",
    ),
    Entry(
        name="serve",
        target=_CLI + "_serve:serve",
        summary="Serve released targets: a static site at /, http handlers under their mounts, "
        "canary traffic split by weight, Prometheus metrics at /metrics; and on the admin port "
        "(an origin of its own) the REST API at /api/v1 (OpenAPI at /api/v1/openapi.json; "
        "tokens from `shipyard tokens create`) and the console at /console/.",
    ),
    Entry(
        name="check",
        target=_CLI + "_sandbox:check",
        summary="Run the check pipeline on a folder in the sandbox. Exit 0 all passed, 1 any "
        "failed.",
    ),
    Entry(
        name="sandbox",
        target=_CLI + "_sandbox:sandbox_app",
        summary="Run commands in the sandbox.",
    ),
    Entry(
        name="replay",
        target=_CLI + "_replay:replay",
        summary="Re-run recorded tasks under another config, policy, prompt, model or check "
        "set, in simulation (no effect leaves Shipyard, no live record changes), and report "
        "every change.",
    ),
    Entry(
        name="policy",
        target=_CLI + "_policy:policy_app",
        summary="Cedar policies: who may do what (default deny).",
    ),
    Entry(name="audit", target=_CLI + "_audit:audit_app", summary="The tamper-evident audit log."),
    Entry(
        name="tokens",
        target=_CLI + "_tokens:tokens_app",
        summary="API tokens: create, list, revoke.",
    ),
    Entry(
        name="memory",
        target=_CLI + "_memory:memory_app",
        summary="What the pipeline remembers and recalls.",
    ),
    Entry(
        name="notifications",
        target=_CLI + "_notifications:notifications_app",
        summary="CloudEvents webhooks: deliveries, retries, a test event.",
    ),
)
"""Every command, in the order ``shipyard --help`` lists them."""


class _Shipyard(LazyGroup):
    entries = COMMANDS


app = typer.Typer(
    name="shipyard",
    help="Shipyard: validate, sandbox, check, approve, store and release generated code.",
    cls=_Shipyard,
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
