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
from shipyard.observe import registry_for
from shipyard.service import (
    Runtime,
    busy_tasks,
    count_by_state,
    escalate_overdue,
    launch,
    list_workers,
    shutdown,
    stop_gracefully,
)


@handle_errors
def worker(
    ctx: typer.Context,
    domains: str = typer.Option("", "--domains", help="Comma-separated domains (default: all)."),
    until_idle: bool = typer.Option(
        False, "--until-idle", help="Exit once every task is finished or waiting for a person."
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

    SIGTERM or SIGINT stops gracefully: no new step starts, the steps under way finish, and
    the worker leaves; live workers take over its tasks from their last finished step. A
    second signal stops at once.
    """
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
        try:
            _run(rt, chosen, stop, until_idle=until_idle)
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
    # Workflows waiting for a person hold executor threads in a timed wait; their state is
    # checkpointed, so leave without joining them (a live worker resumes them).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


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


def _run(rt: Runtime, chosen: list[str], stop: threading.Event, *, until_idle: bool) -> None:
    """Watch the launched worker: escalate overdue approvals once a minute, show progress,
    and return when ``stop`` is set (or, ``until_idle``, when nothing is busy)."""
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
        while not stop.wait(0.25):
            if time.monotonic() >= next_sweep:  # overdue approvals, once a minute
                for task_id in escalate_overdue(rt):
                    err_console.print(f"worker: approval of {task_id} escalated")
                next_sweep = time.monotonic() + 60
            busy = busy_tasks(rt, chosen)
            total = sum(count_by_state(rt).values())
            progress.update(bar, total=total, completed=total - busy)
            if until_idle and busy == 0:
                return


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
