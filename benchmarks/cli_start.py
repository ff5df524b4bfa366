"""How long the command line takes to answer, beside what any process start costs here.

Every row is a fresh process started the way a user or a script starts it (the ``shipyard``
console script of this virtualenv), timed by wall clock from spawn to exit, its output
read through a pipe. One run measures, interleaved round by round (the order rotated each
round so drift on a busy machine hits every row):

- the references: ``python -c pass`` (the interpreter's own start), ``bwrap --ro-bind / /
  true`` (bubblewrap's), and ``python -c "import shipyard.config, shipyard.store"``: the
  settings (pydantic) and the records' models (SQLAlchemy's ORM), which ``status``, ``list``
  and ``show`` cannot do without;
- ``shipyard --help`` and ``--version``;
- ``shipyard status``, ``list`` and ``show TASK`` in a copy of the e-commerce example with its
  20 products submitted (queued; no worker runs);
- ``shipyard sandbox exec --workdir DIR -- python a.py`` (``a.py`` prints one line), cold:
  nothing is warm between runs;
- ``shipyard check DIR`` with its default checks (compile, ruff, pytest, bandit, secrets) on
  a folder of one module and its test.

It prints the median and the fastest run of each, the median as a multiple of ``python -c
pass`` and of ``bwrap ... true``, and the issue's targets (``--help`` <= 0.15 s, ``status``
<= 0.4 s, ``sandbox exec`` <= 0.3 s) as ``TARGET MET`` / ``TARGET MISSED``. The setup (the
project, ``shipyard init``, a token, the submission) is not timed. It exits 0 whenever it
completes, met or not; rows that need bubblewrap say ``n/a`` without it.

Usage::

    .venv/bin/python benchmarks/cli_start.py [--runs N] [--check-runs N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _harness import load_average, machine_line, side_by_side, target

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "ecommerce"

SNIPPET = ("python", "a.py")
"""What ``sandbox exec`` runs."""

TARGETS_MS = {"shipyard --help": 150.0, "shipyard status": 400.0, "sandbox exec (cold)": 300.0}
"""The issue's targets, by row."""


@dataclass(kw_only=True)
class Row:
    """One measured command."""

    name: str
    """How the table names it."""
    argv: Sequence[str]
    """What runs."""
    cwd: Path
    """Where it runs."""
    runs: int
    """How many times."""
    times_ms: list[float] = field(default_factory=list)
    """Wall clock of each run."""


def shipyard_command() -> list[str]:
    """The ``shipyard`` console script beside this interpreter (what a user runs)."""
    script = Path(sys.executable).with_name("shipyard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "shipyard"]


def timed(row: Row, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        row.argv, cwd=row.cwd, env=env, capture_output=True, timeout=300, check=False
    )
    elapsed = (time.perf_counter() - started) * 1000
    allowed = (0, 1) if row.name.startswith("shipyard check") else (0,)
    if done.returncode not in allowed:
        raise SystemExit(
            f"{row.name}: exit status {done.returncode}\n{done.stderr.decode(errors='replace')}"
        )
    return elapsed


def prepare(work: Path) -> tuple[Path, Path, Path, str]:
    """The example project with its products submitted, a snippet folder and a check folder;
    the id of one task."""
    from shipyard.config import load_project
    from shipyard.service import Runtime, create_token

    project = work / "shop"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".shipyard", "__pycache__"))
    shipyard = shipyard_command()
    subprocess.run([*shipyard, "init"], cwd=project, check=True, capture_output=True)
    rt = Runtime.open(load_project(project))
    try:
        _, token = create_token(rt, "shop-owner", "admin", actor="shop-owner")
    finally:
        rt.close()
    submitted = subprocess.run(
        [*shipyard, "submit", "landing-page", "--batch", "products.csv", "--as", "shop-owner"],
        cwd=project,
        env={**os.environ, "SHIPYARD_TOKEN": token},
        capture_output=True,
        text=True,
        check=False,
    )
    if submitted.returncode not in (0, 3):  # 3: some rows refused, the rest submitted
        raise SystemExit(f"submitting the example's products failed:\n{submitted.stderr}")
    listed = subprocess.run(
        [*shipyard, "list", "--json"], cwd=project, capture_output=True, text=True, check=True
    )
    task = json.loads(listed.stdout)[0]["id"]
    snippet = work / "snippet"
    snippet.mkdir()
    (snippet / "a.py").write_text('print("hello from the sandbox")\n')
    code = work / "code"
    code.mkdir()
    (code / "mod.py").write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    (code / "test_mod.py").write_text(
        "from mod import add\n\n\ndef test_add() -> None:\n    assert add(2, 3) == 5\n"
    )
    return project, snippet, code, task


def rows_for(
    work: Path, project: Path, snippet: Path, code: Path, task: str, args: argparse.Namespace
) -> list[Row]:
    shipyard = shipyard_command()
    python = sys.executable
    have_bwrap = shutil.which("bwrap") is not None
    rows = [
        Row(name="python -c pass", argv=[python, "-c", "pass"], cwd=work, runs=args.runs),
        Row(
            name="python: import config + store",
            argv=[python, "-c", "import shipyard.config, shipyard.store"],
            cwd=work,
            runs=args.runs,
        ),
        Row(name="shipyard --help", argv=[*shipyard, "--help"], cwd=work, runs=args.runs),
        Row(name="shipyard --version", argv=[*shipyard, "--version"], cwd=work, runs=args.runs),
        Row(name="shipyard status", argv=[*shipyard, "status"], cwd=project, runs=args.runs),
        Row(name="shipyard list", argv=[*shipyard, "list"], cwd=project, runs=args.runs),
        Row(name="shipyard show TASK", argv=[*shipyard, "show", task], cwd=project, runs=args.runs),
    ]
    if have_bwrap:
        rows.insert(
            1,
            Row(
                name="bwrap --ro-bind / / true",
                argv=["bwrap", "--ro-bind", "/", "/", "true"],
                cwd=work,
                runs=args.runs,
            ),
        )
        rows += [
            Row(
                name="sandbox exec (cold)",
                argv=[*shipyard, "sandbox", "exec", "--workdir", str(snippet), "--", *SNIPPET],
                cwd=work,
                runs=args.runs,
            ),
            Row(
                name="shipyard check DIR",
                argv=[*shipyard, "check", str(code)],
                cwd=work,
                runs=args.check_runs,
            ),
        ]
    return rows


def measure(rows: list[Row]) -> None:
    env = {**os.environ, "COLUMNS": "100"}
    for row in rows:  # once each, untimed: files in the page cache, .pyc written
        timed(row, env)
    rounds = max(row.runs for row in rows)
    for number in range(rounds):
        shift = number % len(rows)
        for row in rows[shift:] + rows[:shift]:
            if len(row.times_ms) < row.runs:
                row.times_ms.append(timed(row, env))


def report(rows: list[Row]) -> list[str]:
    medians = {row.name: statistics.median(row.times_ms) for row in rows}
    python = medians["python -c pass"]
    bwrap = medians.get("bwrap --ro-bind / / true")
    table = []
    for row in rows:
        median = medians[row.name]
        goal = TARGETS_MS.get(row.name)
        table.append(
            (
                row.name,
                [
                    str(len(row.times_ms)),
                    f"{median:.1f}",
                    f"{min(row.times_ms):.1f}",
                    f"{median / python:.1f}",
                    f"{median / bwrap:.1f}" if bwrap else "n/a",
                    f"<= {goal:.0f}" if goal else "",
                    f"  {target(median <= goal)}" if goal else "",
                ],
            )
        )
    columns = ["runs", "median ms", "min ms", "x python", "x bwrap", "target ms", ""]
    return side_by_side(columns, table, label=32, width=[6, 11, 9, 10, 9, 11, 16])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command (default 15)")
    parser.add_argument(
        "--check-runs", type=int, default=5, help="runs of `shipyard check` (default 5)"
    )
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = parser.parse_args()
    print(f"machine: {machine_line('typer', 'sqlalchemy', 'pydantic')}")
    with tempfile.TemporaryDirectory(prefix="shipyard-cli-start-") as folder:
        work = Path(folder)
        project, snippet, code, task = prepare(work)
        rows = rows_for(work, project, snippet, code, task, args)
        if not any(row.name.startswith("bwrap") for row in rows):
            print("note: bubblewrap is not installed: the sandbox rows are left out")
        measure(rows)
    if args.json:
        print(json.dumps({row.name: row.times_ms for row in rows}, indent=2))
    print()
    print("\n".join(report(rows)))
    print(f"\nload average at end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
