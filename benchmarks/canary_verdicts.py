"""How far canary verdicts can be trusted: a matrix of candidates through the real gateway.

One project (the pricing handler of ``tests/canary_support.py``: a ``price-rule`` job kind
whose handler sleeps ``delay_ms``, fails ``fail_rate`` of its visitors' requests and answers
probes with ``probe_status``) is served by the gateway in a process of its own, on loopback,
with visitors requesting it from another process. A baseline version goes live first
(50 ms, 1 % 5xx); then each candidate is released against it by canary, through the durable
controller in a worker in this process:

    good            the baseline again                        expected: promoted
    +5 % 5xx        6 % of requests fail                      expected: rolled back
    +20 % 5xx       21 % fail                                 expected: rolled back
    p95 x1.5        75 ms instead of 50 ms                    expected: rolled back
    p95 x3          150 ms                                    expected: rolled back
    failing probe   visitors are served; probes get a 503     expected: rolled back

The rollout is one stage at 50 % (``[50, 100]``), 3 s of bake, at least 200 candidate
requests, limits of +2 % 5xx and a p95 ratio of 1.2 at 95 % confidence: every regression
above is past a limit, the smaller ones not by much (a handler 1.5 times slower is about 1.3
times slower at the p95 a visitor sees, since the gateway and the scheduler add the same
milliseconds to both arms; the table shows the measured ratio). The visitors (4 threads,
20 ms between requests, about 40 requests a second) stay below what the gateway serves
without queueing beside the hog. Each candidate runs on the machine as it is ("quiet") and
with a CPU hog (a busy loop on every core, ``multiprocessing``, bounded in time), in an
order shuffled per run (seeded). A missed regression that went live is rolled back at once
(``shipyard release rollback``), so the next candidate meets the baseline again.

It prints one line per rollout, then the confusion matrix (expected vs verdict, counts and
rates with 95 % Wilson intervals), and the targets: no good candidate rolled back in any run,
every +20 % 5xx and p95 x3 candidate rolled back, the smaller regressions in most runs.

    .venv/bin/python benchmarks/canary_verdicts.py [--minutes 10] [--runs N] [--seed 1]
                                                   [--conditions quiet,hog] [--bake 3]
                                                   [--min-requests 200] [--postgres URL]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _harness import fresh_postgres, load_average, machine_line, side_by_side, target, worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from canary_support import Load, gateway, handler_project

if TYPE_CHECKING:
    from shipyard.service import Runtime

ROLLOUT = {
    "stages": [50, 100],
    "interval_seconds": 0.5,
    "min_requests": 200,
    "max_p95_ratio": 1.2,
    "max_error_rate_increase": 0.02,
    "confidence": 0.95,
}
BASELINE = {"price": 9.5, "delay_ms": 50.0, "fail_rate": 0.01}
PATHS = [f"/api/price/sku-{n}" for n in range(1, 9)]
LOAD_THREADS = 4
LOAD_PAUSE = 0.02
"""Seconds each visitor thread waits between requests: about 40 requests a second in all,
which the gateway serves without queueing even beside the hog (flat out, the visitors would
measure the gateway's queue, the same for both arms, rather than the handlers)."""
ROLLOUT_TIMEOUT = 240.0
"""Seconds a candidate may take from submit to its verdict before the run gives up on it."""


@dataclass(frozen=True, kw_only=True)
class Candidate:
    name: str
    """As the matrix shows it."""
    key: str
    """Short, for the handler's rule (the generated line must stay within ruff's 88)."""
    inputs: dict[str, Any]
    """Its handler's inputs, over the baseline's."""
    regression: bool
    """Whether it should be rolled back."""
    must_catch: bool = False
    """A regression no run may miss (the targets)."""
    smaller: bool = False
    """One of the smaller regressions, to be caught in most runs (the targets)."""


CANDIDATES = [
    Candidate(name="good", key="ok", inputs={}, regression=False),
    Candidate(name="+5 % 5xx", key="e5", inputs={"fail_rate": 0.06}, regression=True, smaller=True),
    Candidate(
        name="+20 % 5xx", key="e20", inputs={"fail_rate": 0.21}, regression=True, must_catch=True
    ),
    Candidate(name="p95 x1.5", key="l15", inputs={"delay_ms": 75.0}, regression=True, smaller=True),
    Candidate(
        name="p95 x3", key="l3", inputs={"delay_ms": 150.0}, regression=True, must_catch=True
    ),
    Candidate(name="failing probe", key="pr", inputs={"probe_status": 503}, regression=True),
]


@dataclass(frozen=True, kw_only=True)
class Outcome:
    run: int
    condition: str
    candidate: Candidate
    verdict: str
    """``rolled back``, ``promoted`` or what else the task ended as."""
    rule: str
    """What decided: 5xx, p95, probe, thin traffic, passed."""
    stage: str
    seconds: float
    """From submit to the verdict."""
    p95_ratio: float | None
    """The candidate's p95 over the baseline's at the deciding look (same windows)."""
    detail: str = ""
    """Why, when the task ended otherwise than promoted or rolled back."""


# -- load and hog, processes of their own -------------------------------------------------------


def _visitors(url: str, stop: Event) -> None:
    with Load(
        url, PATHS, threads=LOAD_THREADS, pause=LOAD_PAUSE, max_requests=10**9, max_seconds=86_400
    ) as load:
        stop.wait()
        load.hits.clear()


def _spin(until: float) -> None:
    while time.time() < until:
        pass


@contextmanager
def cpu_hog(on: bool, seconds: float) -> Iterator[None]:
    """A busy loop on every core for the block (each ends by itself after ``seconds``)."""
    context = mp.get_context("spawn")
    hogs = [
        context.Process(target=_spin, args=(time.time() + seconds,)) for _ in range(mp.cpu_count())
    ]
    for hog in hogs if on else []:
        hog.start()
    try:
        yield
    finally:
        for hog in hogs if on else []:
            hog.terminate()
            hog.join()


# -- one rollout --------------------------------------------------------------------------------


def release(rt: Runtime, rule: str, inputs: dict[str, Any]) -> str:
    from shipyard.jobs import BatchRow
    from shipyard.service import submit

    row = BatchRow(where="bench", data={"rule": rule, **BASELINE, **inputs})
    result = submit(rt, rt.jobs.get("price-rule"), [row], submitted_by="bench")
    if result.rejected or not result.submitted:
        raise SystemExit(f"the candidate {rule} was refused: {result.rejected}")
    return result.submitted[0]


def settle(rt: Runtime, task_id: str) -> str:
    from shipyard.service import find_task

    deadline = time.monotonic() + ROLLOUT_TIMEOUT
    while time.monotonic() < deadline:
        state = find_task(rt, task_id).state
        if state in ("published", "rolled_back", "failed", "rejected", "cancelled"):
            return state
        time.sleep(0.1)
    return "timed out"


def _rule(release: dict[str, Any]) -> tuple[str, str, float | None]:
    """(what decided, at which stage, the p95 ratio then) from the release's verdicts."""
    verdicts = release["verdicts"] or [{}]
    last = verdicts[-1]
    stage = f"{last.get('weight', 0):g}%"
    reasons = " ".join(last.get("reasons", [])) + " " + str(release.get("reason", ""))
    rule = "passed"
    for words, name in (
        ("error rate", "5xx"),
        ("p95 latency", "p95"),
        ("probe", "probe"),
        ("only", "thin traffic"),
    ):
        if release["state"] == "rolled_back" and words in reasons:
            rule = name
            break
    return rule, stage, last.get("p95_ratio")


def rollout(rt: Runtime, candidate: Candidate, *, run: int, condition: str) -> Outcome:
    from shipyard.service import find_task, releases, steer

    started = time.monotonic()
    rule = f"{candidate.key}-{run}{condition[0]}"
    task_id = release(rt, rule, candidate.inputs)
    state = settle(rt, task_id)
    seconds = time.monotonic() - started
    found = releases(rt, task=task_id)
    decided, stage, ratio = _rule(found[0]) if found else ("-", "-", None)
    verdict = {"published": "promoted", "rolled_back": "rolled back"}.get(state, state)
    if state == "published" and candidate.regression:  # put the baseline back for the next
        steer(rt, task_id, "rollback", actor="bench")
    return Outcome(
        run=run, condition=condition, candidate=candidate, verdict=verdict, rule=decided,
        stage=stage, seconds=seconds, p95_ratio=ratio,
        detail="" if state in ("published", "rolled_back") else find_task(rt, task_id).error,
    )  # fmt: skip


# -- the figures -----------------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a rate of k in n."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(outcomes: Sequence[Outcome]) -> str:
    k = sum(o.verdict == "rolled back" for o in outcomes)
    n = len(outcomes)
    if not n:
        return "-"
    low, high = wilson(k, n)
    return f"{k}/{n} {k / n:.0%} [{low:.0%}-{high:.0%}]"


def report(outcomes: Sequence[Outcome], conditions: Sequence[str]) -> None:
    print("\nrolled back / rollouts, rate [95 % Wilson interval]:")
    columns = [*conditions, "all", "decided by", "p95 ratio"]
    rows = []
    for candidate in CANDIDATES:
        mine = [o for o in outcomes if o.candidate == candidate]
        rules = sorted({o.rule for o in mine if o.verdict == "rolled back"})
        ratios = sorted(o.p95_ratio for o in mine if o.p95_ratio is not None)
        shown = f"{ratios[len(ratios) // 2]:.2f}" if ratios else "-"
        rows.append(
            (
                f"{candidate.name} ({'roll back' if candidate.regression else 'promote'})",
                [
                    *[rate([o for o in mine if o.condition == c]) for c in conditions],
                    rate(mine),
                    ", ".join(rules) or "-",
                    shown,
                ],
            )
        )
    widths = [24] * len(conditions) + [24, 22, 11]
    for line in side_by_side(columns, rows, label=30, width=widths):
        print(line)
    print("\nconfusion matrix (all runs and conditions):")
    expected = {True: "regression", False: "good"}
    matrix = []
    for regression in (True, False):
        mine = [o for o in outcomes if o.candidate.regression == regression]
        back = sum(o.verdict == "rolled back" for o in mine)
        live = sum(o.verdict == "promoted" for o in mine)
        matrix.append((expected[regression], [str(back), str(live), str(len(mine) - back - live)]))
    for line in side_by_side(["rolled back", "promoted", "other"], matrix, label=14, width=13):
        print(line)
    good = [o for o in outcomes if not o.candidate.regression]
    must = [o for o in outcomes if o.candidate.must_catch]
    small = [o for o in outcomes if o.candidate.smaller]
    probe = [o for o in outcomes if o.candidate.key == "pr"]
    print()
    print(f"target: no good candidate rolled back: {rate(good)}  "
          f"{target(bool(good) and all(o.verdict == 'promoted' for o in good))}")  # fmt: skip
    print(f"target: every +20 % 5xx and p95 x3 rolled back: {rate(must)}  "
          f"{target(bool(must) and all(o.verdict == 'rolled back' for o in must))}")  # fmt: skip
    for candidate in [c for c in CANDIDATES if c.smaller]:
        mine = [o for o in small if o.candidate == candidate]
        caught = sum(o.verdict == "rolled back" for o in mine)
        print(f"target: {candidate.name} caught in most runs: {rate(mine)}  "
              f"{target(caught > len(mine) / 2)}")  # fmt: skip
    print(f"(a failing probe, rolled back: {rate(probe)})")


# -- the run ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="start no run after this")
    parser.add_argument("--runs", type=int, default=100, help="at most this many runs")
    parser.add_argument("--seed", type=int, default=1, help="the candidates' order per run")
    parser.add_argument("--conditions", default="quiet,hog", help="quiet, hog or both")
    parser.add_argument("--bake", type=float, default=3.0, help="bake_seconds of each stage")
    parser.add_argument(
        "--min-requests", type=int, default=ROLLOUT["min_requests"], help="per stage"
    )
    parser.add_argument("--postgres", default="", help="a PostgreSQL URL (default: SQLite)")
    args = parser.parse_args(argv)
    conditions = [c for c in args.conditions.split(",") if c]
    if not set(conditions) <= {"quiet", "hog"}:
        parser.error("--conditions: quiet, hog or both")
    print(f"machine: {machine_line('numpy', 'uvicorn')}")
    print(
        f"rollout: stages {ROLLOUT['stages']}, bake {args.bake:g} s, interval "
        f"{ROLLOUT['interval_seconds']} s, min_requests {args.min_requests}, limits "
        f"+{ROLLOUT['max_error_rate_increase']:.0%} 5xx and p95 x{ROLLOUT['max_p95_ratio']} at "
        f"{ROLLOUT['confidence']:.0%}; baseline {BASELINE['delay_ms']:g} ms, "
        f"{BASELINE['fail_rate']:.0%} 5xx; {LOAD_THREADS} visitor threads; conditions "
        f"{', '.join(conditions)} (hog: a busy loop on each of {mp.cpu_count()} cores)\n"
    )
    outcomes: list[Outcome] = []
    began = time.monotonic()
    with ExitStack() as stack:
        rt = stack.enter_context(_project(stack, args))
        with gateway(rt.project) as url:
            stop = mp.get_context("spawn").Event()
            visitors = mp.get_context("spawn").Process(target=_visitors, args=(url, stop))
            visitors.start()
            try:
                _baseline(rt)
                run = 0
                while run < args.runs and time.monotonic() - began < args.minutes * 60:
                    run += 1
                    order = CANDIDATES[:]
                    random.Random(args.seed * 1000 + run).shuffle(order)
                    for condition in conditions:
                        for candidate in order:
                            with cpu_hog(condition == "hog", ROLLOUT_TIMEOUT + 30):
                                outcome = rollout(rt, candidate, run=run, condition=condition)
                            outcomes.append(outcome)
                            _line(outcome)
            finally:
                stop.set()
                visitors.join(timeout=30)
    print(f"\n{run} runs in {(time.monotonic() - began) / 60:.1f} min; load average at end "
          f"{load_average()}")  # fmt: skip
    report(outcomes, conditions)
    return 0


@contextmanager
def _project(stack: ExitStack, args: argparse.Namespace) -> Iterator[Runtime]:
    import os

    from shipyard.config import load_project
    from shipyard.service import Runtime

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="canary-verdicts-")))
    if args.postgres:
        os.environ["SHIPYARD_DATABASE_URL"] = stack.enter_context(fresh_postgres(args.postgres))
    plan = {**ROLLOUT, "min_requests": args.min_requests}
    root = handler_project(folder / "pricing", bake=args.bake, **plan)
    rt = Runtime.open(load_project(root))
    try:
        with worker(rt):
            yield rt
    finally:
        rt.close()


def _baseline(rt: Runtime) -> None:
    task_id = release(rt, "baseline", {})
    state = settle(rt, task_id)
    if state != "published":
        raise SystemExit(f"the baseline did not go live: {state}")
    print(f"baseline {task_id} live\n")


def _line(o: Outcome) -> None:
    ratio = f"{o.p95_ratio:.2f}" if o.p95_ratio is not None else "-"
    print(
        f"run {o.run} {o.condition:5} {o.candidate.name:14} -> {o.verdict:11} at {o.stage:4} "
        f"by {o.rule:12} p95 ratio {ratio:>5}  {o.seconds:5.1f} s  load {load_average()}",
        flush=True,
    )
    if o.detail:
        print(f"      {o.detail}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
