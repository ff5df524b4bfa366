"""``shipyard worker``: run tasks from the domains' queues (recovering any left in flight)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType

import typer
from prometheus_client import start_http_server
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shipyard.cli._common import console, err_console, handle_errors, open_runtime
from shipyard.observe import registry_for
from shipyard.orchestrator import (
    busy_tasks,
    count_by_state,
    escalate_overdue,
    launch,
    shutdown,
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
) -> None:
    """Run tasks until stopped (SIGINT / SIGTERM), or with --until-idle until nothing is busy."""
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        err_console.print(f"worker: {signal.Signals(signum).name}, stopping after this poll")
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with open_runtime(ctx) as rt:
        chosen = launch(rt, domains=[d for d in domains.split(",") if d])
        if metrics_port >= 0:
            server, _ = start_http_server(
                metrics_port, addr="127.0.0.1", registry=registry_for(rt.sessions)
            )
            err_console.print(f"worker: metrics at http://127.0.0.1:{server.server_port}/metrics")
        try:
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
                        break
        finally:
            shutdown()
        counts = count_by_state(rt)
    console.print("tasks: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    # Workflows waiting for a person hold executor threads in a timed wait; their state is
    # checkpointed, so leave without joining them (the next worker resumes them).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
