"""Benchmark scale-out when the work is latency-bound: does W workers give W x one worker?

Each task calls a model that takes 200 ms to answer and runs one trivial check, so a task
spends most of its time waiting, not computing. If nothing shared is taken by one task at a
time, W workers should then run close to W times as many tasks per second as one worker;
anything far below that is a lock, a cap or a queue serializing them (or, on a small
machine, the CPU running out: the figures say which).

The job kind is ``shipyard.testing.scaffold_project``'s ``note`` (one JSON file, one JSON
Schema check in the sandbox, published to a static site without approval), with its tier
switched to ``slow``: the real ``openai`` provider pointed at a Chat Completions server in
this script, on loopback, which answers every call after ``--latency`` seconds (200 ms on
average, each call drawn evenly within ``--jitter``, 100 ms, of it, from a seeded generator)
with the note for the name the prompt asks about. The jitter is there because a worker
claims its next task on its queue's poll, every 200 ms, counted from the poll that claimed
the last one: a worker running one task at a time idles from a task's end to the next tick,
which for a task time that never varies is the same every time (30 ms in one run, 160 ms
in another, as the task time falls), and decides the ratio more than anything shared does.
Spread over a whole poll period, the idle time averages half a period for every W.
``--jitter 0`` shows the effect. The project has a day budget and a price for the model,
so every call is held against the budget and recorded in the ledger, as in production.

For each worker count W (1, 2, 4 by default), on a fresh PostgreSQL database each time:
W ``shipyard worker`` processes start and register, then ``--tasks`` tasks are submitted in
one batch and run to the end, and the workers are stopped. tasks/s is the count over the
time from the first task's first step to the last task's end (from the records); "in flight"
is the most model calls the server saw at once (W x per-worker concurrency is the ceiling);
"CPU busy" is the machine's busy time over that window (all cores, from /proc/stat), which
tells a CPU-bound run from a serialized one; "waiting on a lock" is the share of samples,
every 100 ms, in which some session of the database waited on a lock (with the statements
seen waiting); "idle between tasks" is a worker's time from one task's workflow ending to its
claim of the next (DBOS's ``workflow_status``).

PostgreSQL comes from ``SHIPYARD_BENCH_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``; only its server and credentials are used).

    .venv/bin/python benchmarks/scale_out.py [--tasks N] [--workers 1,2,4]
                                             [--concurrency C] [--latency SECONDS]
                                             [--jitter SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from _harness import fresh_postgres, load_average, machine_line, percentile, side_by_side, target
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from shipyard.store import StepRow, TaskRow, WorkerRow, make_engine, session_factory
from shipyard.testing import scaffold_project

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_RATIO = 3.5
"""4 workers against 1 (issue 22's target)."""
FINAL = ("published", "error", "rejected", "invalid", "paused", "rolled_back", "failed")
_NAME = re.compile(r"greeting (n\d+)\.")


class SlowModel:
    """A Chat Completions server on loopback that answers each call after ``latency`` s,
    give or take up to ``jitter`` s (drawn evenly, seeded).

    The reply is the ``note.json`` the prompt asks for (the name is read from the prompt),
    in Shipyard's reply format, with token counts the ledger prices.
    """

    def __init__(self, latency: float, jitter: float) -> None:
        self.latency, self.jitter = latency, jitter
        self._random = random.Random(22)
        self.calls = 0
        self.in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                with model._lock:
                    model.calls += 1
                    model.in_flight += 1
                    model.peak = max(model.peak, model.in_flight)
                    delay = model.latency + model._random.uniform(-model.jitter, model.jitter)
                try:
                    time.sleep(max(0.0, delay))
                finally:
                    with model._lock:
                        model.in_flight -= 1
                found = _NAME.search(prompt)
                name = found.group(1) if found else "unknown"
                note = json.dumps({"name": name, "greeting": f"Hello, {name}"})
                reply = f"### FILE: note.json\n```json\n{note}\n```\n"
                answer = json.dumps(
                    {
                        "id": f"chatcmpl-{model.calls}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "slow-model"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": len(prompt) // 4,
                            "completion_tokens": len(reply) // 4,
                            "total_tokens": len(prompt) // 4 + len(reply) // 4,
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.calls, self.peak = 0, 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _project(folder: Path, model: SlowModel, concurrency: int) -> Path:
    root = scaffold_project(
        folder / "scale",
        worker_concurrency=concurrency,
        extra_toml=(
            f'\n[tiers.slow]\nprovider = "openai"\nmodel = "slow-model"\nbase_url = "{model.url}"\n'
            "max_tokens = 200\ntimeout_seconds = 30\n"
            '\n[prices."slow-model"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n'
            "\n[budgets]\nday_usd = 1000.0\n"
            "\n[workers]\nheartbeat_seconds = 2\nrecovery_seconds = 30\n"
        ),
    )
    config = root / "shipyard.toml"
    config.write_text(config.read_text().replace('tier = "template"', 'tier = "slow"', 1))
    return root


class LockWaits:
    """Samples, every 100 ms, whether any session of the database waits on a lock (a row, a
    transaction: ``pg_stat_activity.wait_event_type = 'Lock'``), and on which statement."""

    def __init__(self, url: str) -> None:
        self.url, self.samples, self.waiting = url, 0, 0
        self.statements: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> LockWaits:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _sample(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(0.1):
                rows = conn.execute(
                    "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 70) "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                ).fetchall()
                self.samples += 1
                self.waiting += bool(rows)
                self.statements.update(row[0] for row in rows)


def _process_cpu(pid: int) -> float:
    """CPU seconds of a process and of the children it has waited for (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu() -> float:
    """CPU seconds of every PostgreSQL process on this machine (its postmaster counts the
    backends that have exited)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if (proc / "comm").read_text().strip() == "postgres":
                    total += _process_cpu(int(proc.name))
    return total


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _wait(predicate: Any, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in logs)
    raise SystemExit(f"not within {timeout:.0f} s: {what}\n{tails}")


@contextlib.contextmanager
def _workers(root: Path, count: int, env: dict[str, str]) -> Iterator[tuple[list[Path], list[int]]]:
    logs = [root / f"worker-{n}.log" for n in range(count)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "shipyard", "-C", str(root), "worker"],
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env={**env, "SHIPYARD_MACHINE_ID": f"bench-{n}"},
        )
        for n, log in enumerate(logs)
    ]
    try:
        yield logs, [proc.pid for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run(
    tasks: int, workers: int, *, model: SlowModel, concurrency: int, base_pg: str
) -> dict[str, Any]:
    """One configuration: W workers registered, N tasks submitted, run to the end."""
    with (
        tempfile.TemporaryDirectory(prefix="shipyard-scale-out-") as folder,
        contextlib.ExitStack() as stack,
    ):
        root = _project(Path(folder), model, concurrency)
        url = stack.enter_context(fresh_postgres(base_pg))
        env = {**os.environ, "SHIPYARD_DATABASE_URL": url, "COLUMNS": "200"}
        engine = make_engine(url)
        stack.callback(engine.dispose)
        sessions = session_factory(engine)

        def registered() -> bool:
            try:
                with sessions() as session:
                    running = session.scalar(
                        select(func.count())
                        .select_from(WorkerRow)
                        .where(WorkerRow.state == "running")
                    )
            except SQLAlchemyError:
                return False  # not migrated yet
            return running == workers

        def settled() -> bool:
            with sessions() as session:
                done = session.scalar(
                    select(func.count()).select_from(TaskRow).where(TaskRow.state.in_(FINAL))
                )
            return done == tasks

        logs, pids = stack.enter_context(_workers(root, workers, env))
        _wait(registered, 120, f"{workers} worker(s) registered", logs)
        batch = root / "names.csv"
        batch.write_text("name\n" + "".join(f"n{i:05d}\n" for i in range(tasks)))
        model.reset()
        waits = stack.enter_context(LockWaits(url))
        busy0, total0 = _cpu_ticks()
        workers0, pg0 = sum(_process_cpu(p) for p in pids), _postgres_cpu()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "shipyard",
                "-C",
                str(root),
                "submit",
                "note",
                "-b",
                str(batch),
                "--as",
                "bench",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        _wait(settled, 600, f"{tasks} tasks settled", logs)
        busy1, total1 = _cpu_ticks()
        workers1, pg1 = sum(_process_cpu(p) for p in pids), _postgres_cpu()
        figures = _figures(sessions, tasks)
        waits.__exit__()
        figures["lock_waits"] = waits.waiting / max(1, waits.samples)
        figures["lock_statements"] = waits.statements.most_common(3)
        figures["in_flight_peak"] = model.peak
        figures["calls"] = model.calls
        figures["cpu_busy"] = (busy1 - busy0) / max(1, total1 - total0)
        figures["worker_cpu_ms"] = (workers1 - workers0) / tasks * 1000
        figures["postgres_cpu_ms"] = (pg1 - pg0) / tasks * 1000
        return figures


def _figures(sessions: Any, expected: int) -> dict[str, Any]:
    with sessions() as session:
        states = session.scalars(select(TaskRow.state)).all()
        steps = session.execute(
            select(StepRow.task_id, StepRow.stage, StepRow.started_at, StepRow.finished_at)
        ).all()
        # Each task's workflow: which worker claimed it, when, and when it ended (DBOS's rows).
        runs = session.execute(
            text(
                "SELECT executor_id, started_at_epoch_ms, updated_at FROM dbos.workflow_status "
                "WHERE name = 'shipyard.task' ORDER BY executor_id, started_at_epoch_ms"
            )
        ).all()
    idle = [
        float(claimed - ended)
        for (worker, _, ended), (same, claimed, _) in itertools.pairwise(runs)
        if worker == same
    ]
    published = sum(1 for s in states if s == "published")
    if published != expected:
        raise SystemExit(f"{published} of {expected} tasks published: {sorted(set(states))}")
    spans: dict[str, list[tuple[str, float, float]]] = {}
    for task_id, stage, started, finished in steps:
        if started is not None and finished is not None:
            spans.setdefault(task_id, []).append((stage, started.timestamp(), finished.timestamp()))
    first = min(s for task in spans.values() for _, s, _ in task)
    last = max(f for task in spans.values() for _, _, f in task)
    walls = [(max(f for _, _, f in t) - min(s for _, s, _ in t)) * 1000 for t in spans.values()]
    generate = [(f - s) * 1000 for t in spans.values() for stage, s, f in t if stage == "generate"]
    return {
        "tasks_per_s": expected / (last - first),
        "seconds": last - first,
        "task_p50_ms": statistics.median(walls),
        "task_p95_ms": percentile(walls, 95),
        "generate_p50_ms": statistics.median(generate),
        "idle_p50_ms": statistics.median(idle) if idle else math.nan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=80, help="tasks per run")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to compare")
    parser.add_argument("--concurrency", type=int, default=1, help="tasks at once per worker")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per model call")
    parser.add_argument("--jitter", type=float, default=0.1, help="give or take, seconds")
    args = parser.parse_args()
    base_pg = os.environ.get("SHIPYARD_BENCH_POSTGRES_URL", PG_DEFAULT)
    counts = [int(n) for n in args.workers.split(",") if n]
    print(f"machine: {machine_line('dbos')}")
    print(
        f"latency-bound scale-out on PostgreSQL: {args.tasks} tasks per run, a model call of "
        f"{args.latency * 1000:.0f} ms (+/- {args.jitter * 1000:.0f} ms), "
        f"{args.concurrency} task(s) at once per worker"
    )
    model = SlowModel(args.latency, args.jitter)
    results: dict[int, dict[str, Any]] = {}
    try:
        for count in counts:
            results[count] = run(
                args.tasks, count, model=model, concurrency=args.concurrency, base_pg=base_pg
            )
    finally:
        model.close()
    one = results.get(1, {}).get("tasks_per_s")
    columns = [f"{n} worker{'s' if n > 1 else ''}" for n in counts]
    rows = [
        ("tasks/s", [f"{results[n]['tasks_per_s']:.2f}" for n in counts]),
        (
            "vs 1 worker",
            [f"{results[n]['tasks_per_s'] / one:.2f}x" if one else "-" for n in counts],
        ),
        ("ideal (W x 1 worker)", [f"{n:.2f}x" for n in counts]),
        ("task p50", [f"{results[n]['task_p50_ms']:.0f} ms" for n in counts]),
        ("task p95", [f"{results[n]['task_p95_ms']:.0f} ms" for n in counts]),
        ("generate p50", [f"{results[n]['generate_p50_ms']:.0f} ms" for n in counts]),
        ("idle between tasks p50", [f"{results[n]['idle_p50_ms']:.0f} ms" for n in counts]),
        (
            "calls in flight (peak)",
            [f"{results[n]['in_flight_peak']:.0f} of {n * args.concurrency}" for n in counts],
        ),
        ("worker CPU per task", [f"{results[n]['worker_cpu_ms']:.0f} ms" for n in counts]),
        ("PostgreSQL CPU per task", [f"{results[n]['postgres_cpu_ms']:.0f} ms" for n in counts]),
        ("waiting on a lock", [f"{results[n]['lock_waits'] * 100:.1f} %" for n in counts]),
        ("CPU busy (all cores)", [f"{results[n]['cpu_busy'] * 100:.0f} %" for n in counts]),
        ("wall", [f"{results[n]['seconds']:.1f} s" for n in counts]),
    ]
    print("\n".join(side_by_side(columns, rows, label=24, width=12)))
    for n in counts:
        for statement, seen in results[n]["lock_statements"]:
            print(f"  {n} worker(s), waiting on a lock in {seen} samples: {statement}")
    if one and 4 in results:
        ratio = results[4]["tasks_per_s"] / one
        print(
            f"\n4 workers / 1 worker: {ratio:.2f}x (target: >= {TARGET_RATIO}x) "
            + target(ratio >= TARGET_RATIO)
        )
    print(f"load average at end: {load_average()}")
    print(json.dumps({str(n): f for n, f in results.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
