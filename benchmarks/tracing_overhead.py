"""Benchmark what tracing costs: the pipeline's throughput with tracing on vs off, one run.

The e-commerce example's landing-page job kind (template tier, html and JSON-LD checks in
the bubblewrap sandbox, register, gate) runs N tasks through an in-process worker, in
alternating rounds with ``[observe] tracing = true`` and ``false`` (on, off, on, off, ...),
each round in a fresh copy of the project, so both settings see the same machine state. The
figure is tasks per second from the first submit until every task is settled; the ratio is
the median "on" round over the median "off" round.

Target: tracing costs at most 5 % of throughput (on / off >= 0.95).

    .venv/bin/python benchmarks/tracing_overhead.py [--tasks N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _harness import machine_line, side_by_side, wait_until_idle, worker

from shipyard.config import load_project
from shipyard.jobs import BatchRow
from shipyard.service import Runtime, submit
from shipyard.store import SpanRow

REPO = Path(__file__).resolve().parents[1]

EXAMPLE = REPO / "examples" / "ecommerce"
DOMAIN = "storefront"


def product(n: int) -> dict[str, str]:
    return {
        "sku": f"SKU-{n:03d}",
        "name": f"Trail Mug {n}",
        "price": f"{10 + n % 30}.50",
        "currency": "USD",
        "shipping_weight_kg": "0.4",
        "category": "Kitchen",
        "features": "Enamel|Holds 350 ml",
        "image": f"/images/sku-{n:03d}.jpg",
        "image_alt": "A blue enamel mug on a rock",
        "brand": "Northbound",
    }


def one_round(tasks: int, tracing: bool) -> tuple[float, int]:
    """(tasks per second, spans stored) for one round in a fresh project copy."""
    with tempfile.TemporaryDirectory(prefix="shipyard-tracing-") as folder:
        root = Path(folder) / "shop"
        shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".shipyard"))
        config = root / "shipyard.toml"
        config.write_text(
            config.read_text() + f"\n[observe]\ntracing = {'true' if tracing else 'false'}\n"
        )
        os.environ.pop("SHIPYARD_DATABASE_URL", None)
        rt = Runtime.open(load_project(root))
        try:
            with worker(rt):
                kind = rt.jobs.get("landing-page")
                started = time.perf_counter()
                rows = [BatchRow(where=f"row {n}", data=product(n)) for n in range(1, tasks + 1)]
                submit(rt, kind, rows, submitted_by="shop-owner")
                wait_until_idle(rt, [DOMAIN], poll=0.05)
                elapsed = time.perf_counter() - started
            rt.tracing.flush()
            with rt.sessions() as session:
                spans = session.query(SpanRow).count()
        finally:
            rt.close()
    return tasks / elapsed, spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=30, help="tasks per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per setting")
    args = parser.parse_args()
    print(f"machine: {machine_line()}")
    one_round(3, True)  # warm the sandbox pool's files and imports once
    on: list[float] = []
    off: list[float] = []
    spans_on = 0
    for round_number in range(1, args.rounds + 1):
        for tracing in (True, False) if round_number % 2 else (False, True):
            rate, spans = one_round(args.tasks, tracing)
            (on if tracing else off).append(rate)
            spans_on = max(spans_on, spans if tracing else 0)
            print(
                f"round {round_number}, tracing {'on ' if tracing else 'off'}: "
                f"{rate:.2f} tasks/s ({spans} spans stored)"
            )
    median_on, median_off = statistics.median(on), statistics.median(off)
    ratio = median_on / median_off
    verdict = "met" if ratio >= 0.95 else "NOT met"
    rows = [
        ("median tasks/s", [f"{median_on:.2f}", f"{median_off:.2f}"]),
        ("spans per task", [f"{spans_on / args.tasks:.1f}", f"{0:.1f}"]),
        ("throughput on / off", [f"{ratio:.3f}"]),
        ("cost of tracing", [f"{(1 - ratio) * 100:.1f}%"]),
    ]
    lines = side_by_side(["tracing on", "tracing off"], rows, label=32, width=14, rule=False)
    lines[3] += f"   target >= 0.95: {verdict}"
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
