"""``shipyard worker`` (run tasks from the domains' queues) and ``shipyard workers`` (who is)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType

import typer
from prometheus_client import start_http_server
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shipyard.cli._common import console, err_console, handle_errors, open_runtime, print_json
from shipyard.errors import InputError
from shipyard.observe import registry_for
from shipyard.service import (
    Idleness,
    Runtime,
    count_by_state,
    escalate_overdue,
    idleness,
    launch,
    list_workers,
    shutdown,
    stop_gracefully,
)

GATEWAY_WANTED = 75
"""``worker --until-idle``'s exit status when only releases waiting for a gateway are left
(EX_TEMPFAIL: run it again once ``shipyard serve`` is up)."""


@handle_errors
def worker(
    ctx: typer.Context,
    domains: str = typer.Option("", "--domains", help="Comma-separated domains (default: all)."),
    until_idle: bool = typer.Option(
        False,
        "--until-idle",
        help="Exit once every task is finished or waiting for a person; exit status "
        f"{GATEWAY_WANTED} if releases are left waiting for a gateway (`shipyard serve`).",
    ),
    wait_for_gateway: bool = typer.Option(
        False,
        "--wait-for-gateway",
        help="With --until-idle: wait for a gateway to serve the releases that need one.",
    ),
    metrics_port: int = typer.Option(
        -1, "--metrics-port", help="Serve Prometheus /metrics on this port (0: a free one)."
    ),
    drain_seconds: float = typer.Option(
        -1.0,
        "--drain-seconds",
        help="On SIGTERM, seconds the steps under way get to finish (default: "
        "workers.drain_seconds).",
    ),
) -> None:
    """Run tasks until stopped, or with --until-idle until nothing is busy.

    A canary release goes on only while a gateway (`shipyard serve`) serves its target. When
    all that is left is releases waiting for one, --until-idle says so and exits with status
    GATEWAY_WANTED (75); with --wait-for-gateway it says so once and waits.

    SIGTERM or SIGINT stops gracefully: no new step starts, the steps under way finish, and
    the worker leaves; live workers take over its tasks from their last finished step. A
    second signal stops at once.
    """
    if wait_for_gateway and not until_idle:
        raise InputError(
            "--wait-for-gateway applies only with --until-idle (a worker without it waits anyway)"
        )
    stop = _stop_on_signals()
    with open_runtime(ctx) as rt:
        if rt.migrated is not None:
            before, after = rt.migrated
            err_console.print(
                f"worker: migrated the database schema {before or '(empty)'} → {after}"
            )
        chosen = launch(rt, domains=[d for d in domains.split(",") if d])
        if metrics_port >= 0:
            server, _ = start_http_server(
                metrics_port, addr="127.0.0.1", registry=registry_for(rt.sessions)
            )
            err_console.print(f"worker: metrics at http://127.0.0.1:{server.server_port}/metrics")
        graceful = False
        remains: Idleness | None = None
        try:
            remains = _run(
                rt, chosen, stop, until_idle=until_idle, wait_for_gateway=wait_for_gateway
            )
            graceful = stop.is_set()
        finally:
            if graceful:
                settings = rt.project.settings.workers
                started = time.monotonic()
                left = stop_gracefully(
                    drain_seconds if drain_seconds >= 0 else settings.drain_seconds
                )
                err_console.print(
                    f"worker: stopped after {time.monotonic() - started:.1f} s of draining"
                    + (f"; {left} step(s) cut short will run again elsewhere" if left else "")
                )
            else:
                shutdown()
        counts = count_by_state(rt)
    console.print("tasks: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    status = 0
    if remains is not None and remains.waiting_for_gateway:
        err_console.print(f"worker: {_gateway_wanted(remains)}; run the worker again once it is up")
        status = GATEWAY_WANTED
    # Workflows waiting for a person hold executor threads in a timed wait; their state is
    # checkpointed, so leave without joining them (a live worker resumes them).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _gateway_wanted(left: Idleness) -> str:
    targets = ", ".join(
        f"{target} ({len(tasks)} release{'s' if len(tasks) != 1 else ''})"
        for target, tasks in sorted(left.gateway_wanted.items())
    )
    return f"no gateway serves {targets}: start `shipyard serve`"


def _stop_on_signals() -> threading.Event:
    """An event SIGTERM or SIGINT sets (a graceful stop); a second signal exits at once."""
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            err_console.print(f"worker: second {signal.Signals(signum).name}, stopping now")
            sys.stderr.flush()
            os._exit(130)
        err_console.print(
            f"worker: {signal.Signals(signum).name}: taking no new step, finishing those under way"
        )
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return stop


def _run(
    rt: Runtime,
    chosen: list[str],
    stop: threading.Event,
    *,
    until_idle: bool,
    wait_for_gateway: bool,
) -> Idleness | None:
    """Watch the launched worker: escalate overdue approvals once a minute, show progress,
    and return when ``stop`` is set (None), or, ``until_idle``, what is left once nothing
    can move (unless ``wait_for_gateway`` and releases wait for a gateway)."""
    with Progress(
        TextColumn("[bold]worker[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not until_idle,
    ) as progress:
        bar = progress.add_task(", ".join(chosen), total=None)
        next_sweep = 0.0
        told: set[str] = set()
        while not stop.wait(0.25):
            if time.monotonic() >= next_sweep:  # overdue approvals, once a minute
                for task_id in escalate_overdue(rt):
                    err_console.print(f"worker: approval of {task_id} escalated")
                next_sweep = time.monotonic() + 60
            if not until_idle:
                continue  # nothing to show or decide: run until stopped
            now = idleness(rt, chosen)
            progress.update(bar, total=now.total, completed=now.total - now.busy)
            if not now.idle:
                continue
            if not (wait_for_gateway and now.waiting_for_gateway):
                return now
            if not set(now.gateway_wanted) <= told:  # once for each target
                progress.console.print(f"worker: {_gateway_wanted(now)}; waiting for it")
                told |= set(now.gateway_wanted)
    return None


@handle_errors
def workers(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="Also workers that stopped or died."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Workers: their domains, last heartbeat, and the tasks each holds now."""
    with open_runtime(ctx) as rt:
        found = list_workers(rt, include_gone=all_)
        recovery = rt.project.settings.workers.recovery_seconds
    if as_json:
        print_json(
            [
                {
                    "id": w.id,
                    "host": w.host,
                    "pid": w.pid,
                    "domains": w.domains,
                    "version": w.version,
                    "state": w.state,
                    "started_at": w.started_at.isoformat(),
                    "heartbeat_age_seconds": round(w.heartbeat_age, 3),
                    "in_flight": w.in_flight,
                    "taken_over_by": w.taken_over_by,
                    "recovered": w.recovered,
                }
                for w in found
            ]
        )
        return
    if not found:
        console.print("no workers" + ("" if all_ else " running (see --all)"))
        return
    table = Table("worker", "host", "pid", "domains", "state", "heartbeat", "in flight")
    for w in found:
        late = w.state in ("running", "draining") and w.heartbeat_age > recovery
        state = w.state + (f" → {w.taken_over_by} ({w.recovered})" if w.taken_over_by else "")
        beat = f"{w.heartbeat_age:.1f} s ago" + (" (silent: to be taken over)" if late else "")
        shown = ", ".join(w.in_flight[:3]) + (
            f" +{len(w.in_flight) - 3}" if len(w.in_flight) > 3 else ""
        )
        table.add_row(
            escape(w.id),
            escape(w.host),
            str(w.pid),
            escape(",".join(w.domains)),
            escape(state),
            beat,
            f"{len(w.in_flight)}" + (f": {shown}" if shown else ""),
        )
    console.print(table)
