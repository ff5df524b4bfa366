"""What the benchmarks in this folder share, defined once.

- ``percentile``: nearest rank (no interpolation), the one definition every script uses;
- ``machine_line`` and ``load_average``: what the numbers were measured on;
- ``side_by_side``: a table with one right-aligned column per compared thing;
- ``target``: ``TARGET MET`` / ``TARGET MISSED``;
- ``worker`` and ``wait_until_idle``: shipyard's worker in this process, run until idle;
- ``fresh_postgres``: a throwaway PostgreSQL database for one run;
- ``fixture``: the text of a file under ``benchmarks/fixtures/``.

The scripts run as ``.venv/bin/python benchmarks/NAME.py``: Python puts the script's folder
first on ``sys.path``, so ``from _harness import ...`` finds this file (a process that
``multiprocessing`` spawns inherits that path). shipyard, psycopg and SQLAlchemy are imported
inside the functions that use them, so importing this module costs nothing more than the
standard library.
"""

from __future__ import annotations

import math
import os
import platform
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shipyard.service import Runtime

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(*parts: str) -> str:
    """The text of ``benchmarks/fixtures/<parts...>``, read as UTF-8."""
    return FIXTURES.joinpath(*parts).read_text(encoding="utf-8")


# --- figures ---------------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (``q`` in 0..100) of ``values`` by nearest rank.

    The value at rank ``ceil(q / 100 * n)`` (at least 1) of the ``n`` values sorted: the
    smallest measured value that at least ``q`` % of them are at or below. No interpolation,
    so it is always one of the measured values; p50 of an even count is the lower of the two
    middle ones. NaN when there are no values.
    """
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def target(met: bool) -> str:
    """How a benchmark reports a target: ``TARGET MET`` or ``TARGET MISSED``."""
    return "TARGET MET" if met else "TARGET MISSED"


# --- the machine -----------------------------------------------------------------------------


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, e.g. ``0.80, 0.52, 0.31``."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                name, _, value = line.partition(":")
                if name.strip() == "model name" and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_line(*packages: str) -> str:
    """One line on what the figures were measured on: CPU model, cores, load average now,
    Python, SQLite, shipyard's version and those of ``packages``, and the platform."""
    versions = ", ".join(
        f"{package} {metadata.version(package)}" for package in ("shipyard", *packages)
    )
    return (
        f"{cpu_model()}, nproc={os.cpu_count()} (affinity {len(os.sched_getaffinity(0))}), "
        f"load average {load_average()}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {versions}, {platform.platform()}"
    )


# --- tables ----------------------------------------------------------------------------------


def side_by_side(
    columns: Sequence[str],
    rows: Iterable[tuple[str, Sequence[str]]],
    *,
    label: int,
    width: int | Sequence[int],
    rule: bool = True,
) -> list[str]:
    """The lines of a table with one column per compared thing.

    A header line with the column names, a rule of dashes under it (``rule``), then one line
    per row: its label left-aligned in ``label`` characters, its cells right-aligned, each in
    its column's width (``width``: one for every column, or one per column). A row may have
    fewer cells than there are columns. The caller prints the lines (and may add to one).
    """
    widths = [width] * len(columns) if isinstance(width, int) else list(width)
    lines = [f"{'':{label}}" + "".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True))]
    if rule:
        lines.append("-" * (label + sum(widths)))
    for name, cells in rows:
        if len(cells) > len(widths):
            raise ValueError(f"row {name!r}: {len(cells)} cells for {len(widths)} columns")
        shown = zip(cells, widths[: len(cells)], strict=True)
        lines.append(f"{name:{label}}" + "".join(f"{c:>{w}}" for c, w in shown))
    return lines


# --- shipyard's worker, in this process ------------------------------------------------------


@contextmanager
def worker(rt: Runtime) -> Iterator[None]:
    """shipyard's worker in this process (``launch``) for the block; ``shutdown`` after it."""
    from shipyard.service import launch, shutdown

    launch(rt)
    try:
        yield
    finally:
        shutdown()


def wait_until_idle(
    rt: Runtime, domains: Sequence[str], *, timeout: float = math.inf, poll: float = 0.1
) -> int:
    """Poll ``busy_tasks`` every ``poll`` seconds until no task of ``domains`` is left for a
    worker to move on, or ``timeout`` seconds have passed; the number still busy (0: idle)."""
    from shipyard.service import busy_tasks

    deadline = time.monotonic() + timeout
    while (busy := busy_tasks(rt, list(domains))) and time.monotonic() < deadline:
        time.sleep(poll)
    return busy


# --- PostgreSQL ------------------------------------------------------------------------------


def postgres_admin_url(base: str) -> str:
    """The ``postgres`` database on ``base``'s server (same credentials), as a libpq URL:
    where databases are created and dropped."""
    from sqlalchemy.engine import make_url

    url = make_url(base).set(drivername="postgresql", database="postgres")
    return url.render_as_string(hide_password=False)


@contextmanager
def fresh_postgres(base: str) -> Iterator[str]:
    """A new, empty database ``shipyard_bench_<random>`` on ``base``'s server, dropped
    (``WITH (FORCE)``) afterwards; yields its URL. Only ``base``'s server and credentials are
    used, never its database."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"shipyard_bench_{secrets.token_hex(4)}"
    admin = postgres_admin_url(base)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
