"""Benchmark end-to-end throughput as workers are added, and the platform's cost per task.

The job kind is ``shipyard.testing.scaffold_project``'s ``note``: the template tier writes
one JSON file (a zero-latency provider: no model), one check validates it against a JSON
Schema in the bubblewrap sandbox (a trivial check set), and the task is registered, signed,
gated by policy and published to a static site without approval. Every figure comes from
the records the tasks leave, not from timers around them.

Two measurements, in one run:

1. Per-task platform overhead on SQLite, one worker running one task at a time: each task's
   time from its first step's start to its last step's end, minus its generate and verify
   steps (generation and checks). What remains is Shipyard's own work: validating, recall,
   recording, registering, signing provenance, the policy gate, publishing, remembering,
   and DBOS's checkpoints between them. Target: p50 <= 50 ms.
2. Throughput: N tasks submitted up front, then W ``shipyard worker`` processes started
   together (each its own process, as in production): on SQLite with one worker, and on
   PostgreSQL with 1, 2 and 4 workers. tasks/s = N over the time from the first task's first
   step to the last task's end (start-up excluded). Target: 2 workers on PostgreSQL >= 1.6x
   one worker.

PostgreSQL comes from ``SHIPYARD_BENCH_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``; only its server and credentials are used):
each run gets a fresh database, dropped afterwards. The overhead's p50 is the median, its p95
the nearest rank (``_harness.percentile``).

    .venv/bin/python benchmarks/throughput.py [--tasks N] [--overhead-tasks M]
                                              [--workers 1,2,4] [--concurrency C]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import fresh_postgres, machine_line, percentile
from sqlalchemy import select

from shipyard.store import StepRow, TaskRow, make_engine, session_factory
from shipyard.testing import scaffold_project

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
EXCLUDED = ("generate", "verify")
"""Stages that are generation and checks: not the platform's own time."""


def _shipyard(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipyard", "-C", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )


def _database_url(root: Path, env: dict[str, str]) -> str:
    url = env.get("SHIPYARD_DATABASE_URL")
    return url or f"sqlite:///{root / '.shipyard' / 'shipyard.db'}"


def run(
    tasks: int, workers: int, *, database: str, concurrency: int, base_pg: str
) -> dict[str, float]:
    """One configuration: submit, run W workers to the end, read the records."""
    with tempfile.TemporaryDirectory(prefix="shipyard-throughput-") as folder:
        root = scaffold_project(
            Path(folder) / "scale", concurrency=64, worker_concurrency=concurrency
        )
        env = {k: v for k, v in os.environ.items() if k != "SHIPYARD_DATABASE_URL"}
        with contextlib.ExitStack() as stack:
            if database == "postgresql":
                env["SHIPYARD_DATABASE_URL"] = stack.enter_context(fresh_postgres(base_pg))
            batch = root / "names.csv"
            batch.write_text("name\n" + "".join(f"n{i:05d}\n" for i in range(tasks)))
            _shipyard(root, "submit", "note", "-b", str(batch), "--as", "bench", env=env)
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "shipyard", "-C", str(root), "worker", "--until-idle"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
                for _ in range(workers)
            ]
            for proc in procs:
                _, err = proc.communicate(timeout=1800)
                if proc.returncode != 0:
                    raise SystemExit(f"a worker failed:\n{err}")
            return _figures(_database_url(root, env), tasks)


def _figures(url: str, expected: int) -> dict[str, float]:
    engine = make_engine(url)
    sessions = session_factory(engine)
    with sessions() as session:
        states = session.scalars(select(TaskRow.state)).all()
        steps = session.execute(
            select(StepRow.task_id, StepRow.stage, StepRow.started_at, StepRow.finished_at)
        ).all()
    engine.dispose()
    published = sum(1 for s in states if s == "published")
    if published != expected:
        raise SystemExit(f"{published} of {expected} tasks published: {sorted(set(states))}")
    spans: dict[str, list[tuple[str, float, float]]] = {}
    for task_id, stage, started, finished in steps:
        if started is None or finished is None:
            continue
        spans.setdefault(task_id, []).append((stage, started.timestamp(), finished.timestamp()))
    first = min(s for task in spans.values() for _, s, _ in task)
    last = max(f for task in spans.values() for _, _, f in task)
    overhead = []
    for task in spans.values():
        wall = max(f for _, _, f in task) - min(s for _, s, _ in task)
        excluded = sum(f - s for stage, s, f in task if stage in EXCLUDED)
        overhead.append((wall - excluded) * 1000)
    return {
        "tasks_per_s": expected / (last - first),
        "overhead_p50_ms": statistics.median(overhead),
        "overhead_p95_ms": percentile(overhead, 95),
        "seconds": last - first,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200, help="tasks per throughput run")
    parser.add_argument("--overhead-tasks", type=int, default=60)
    parser.add_argument("--workers", default="1,2,4", help="PostgreSQL worker counts")
    parser.add_argument("--concurrency", type=int, default=8, help="tasks at once per worker")
    args = parser.parse_args()
    base_pg = os.environ.get("SHIPYARD_BENCH_POSTGRES_URL", PG_DEFAULT)
    counts = [int(n) for n in args.workers.split(",") if n]
    print(f"machine: {machine_line()}")

    print(
        "per-task platform overhead: SQLite, 1 worker, 1 task at a time, "
        f"{args.overhead_tasks} tasks"
    )
    alone = run(args.overhead_tasks, 1, database="sqlite", concurrency=1, base_pg=base_pg)
    print(
        f"  p50 {alone['overhead_p50_ms']:.1f} ms, p95 {alone['overhead_p95_ms']:.1f} ms "
        f"(target: p50 <= 50 ms)\n"
    )

    print(f"throughput: {args.tasks} tasks, {args.concurrency} at once per worker")
    rows: list[tuple[str, int, dict[str, float]]] = []
    rows.append(
        (
            "SQLite",
            1,
            run(args.tasks, 1, database="sqlite", concurrency=args.concurrency, base_pg=base_pg),
        )
    )
    for count in counts:
        rows.append(
            (
                "PostgreSQL",
                count,
                run(
                    args.tasks,
                    count,
                    database="postgresql",
                    concurrency=args.concurrency,
                    base_pg=base_pg,
                ),
            )
        )
    one_pg = next((f["tasks_per_s"] for db, n, f in rows if db == "PostgreSQL" and n == 1), None)
    header = ("database", "workers", "tasks/s", "vs 1 PG", "overhead p50", "p95")
    print("  {:<11} {:>7} {:>8} {:>8} {:>13} {:>9}".format(*header))
    for db, count, figures in rows:
        ratio = f"{figures['tasks_per_s'] / one_pg:.2f}x" if one_pg else "-"
        print(
            f"  {db:<11} {count:>7} {figures['tasks_per_s']:>8.1f} {ratio:>8} "
            f"{figures['overhead_p50_ms']:>10.1f} ms {figures['overhead_p95_ms']:>6.1f} ms"
        )
    two = next((f["tasks_per_s"] for db, n, f in rows if db == "PostgreSQL" and n == 2), None)
    if one_pg and two:
        print(f"\n  2 workers / 1 worker on PostgreSQL: {two / one_pg:.2f}x (target: >= 1.6x)")
    print(
        json.dumps({"overhead": alone, "runs": [[db, n, f] for db, n, f in rows]}), file=sys.stderr
    )


if __name__ == "__main__":
    main()
