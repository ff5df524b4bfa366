"""Reading what a repository's own commands said: pure helpers of :mod:`shipyard.checks._repo`.

Everything here runs on the host and reads output written by the repository's code (its
tests, its linter's configuration), so all of it is untrusted text: sizes are capped, the
JUnit report is read without following a symlink and refused when it declares a DTD, and
paths are only kept when they stay inside the repository.
"""

from __future__ import annotations

import os
import re
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from shipyard.checks._tool import MalformedOutput, load_json, rule_part
from shipyard.model import Finding
from shipyard.sandbox import RunResult

__all__ = [
    "FIX_WORDS",
    "MAX_FINDINGS",
    "TEST_WORDS",
    "JunitReport",
    "TestCounts",
    "added_lines",
    "exit_finding",
    "is_fix_goal",
    "is_mypy",
    "is_test_path",
    "judge_lint",
    "judge_typecheck",
    "mypy_findings",
    "output_tail",
    "read_junit",
    "relative_path",
    "ruff_findings",
    "with_junit",
    "with_ruff_json",
]

FIX_WORDS = frozenset(
    {
        "fix", "fixes", "fixed", "fixing",
        "bug", "bugs", "buggy",
        "broken", "breaks",
        "crash", "crashes", "crashed", "crashing",
        "error", "errors",
        "regression", "regressions",
        "fail", "fails", "failed", "failing", "failure", "failures",
    }
)  # fmt: skip
"""Words (any case) that make a goal a fix: a change for it must touch more than tests."""

TEST_WORDS = frozenset({"test", "tests", "testing", "pytest", "unittest", "coverage"})
"""Words that make tests what the goal is about ("fix the flaky test"): such a goal may be
met by changing tests only."""

MAX_FINDINGS = 100
"""Findings kept per result; the rest are counted in its ``detail``."""
MAX_MESSAGE = 500
"""Characters kept of one finding's message."""
MAX_REPORT_BYTES = 20 << 20
"""Largest JUnit report read."""

_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_WORD = re.compile(r"[a-z]+")
_FRAME = re.compile(r"^(\S+?\.py):(\d+):", re.MULTILINE)
_MYPY = re.compile(
    r"^(?P<file>[^\s:][^:\n]*?):(?P<line>\d+)(?::\d+)?(?::\d+:\d+)?: "
    r"(?P<severity>error|warning): (?P<message>.*?)(?:  \[(?P<code>[a-z0-9-]+)\])?$"
)
_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?$")


def added_lines(patch: str) -> set[int]:
    """The new-side line numbers a unified patch adds (none for a binary patch)."""
    lines: set[int] = set()
    old_left = new_left = 0
    number = 0
    for line in patch.split("\n"):
        if old_left > 0 or new_left > 0:
            if line.startswith("+"):
                lines.add(number)
                number += 1
                new_left -= 1
            elif line.startswith("-"):
                old_left -= 1
            elif line.startswith("\\"):
                continue  # "\ No newline at end of file"
            else:
                number += 1
                old_left -= 1
                new_left -= 1
            continue
        hunk = _HUNK.match(line)
        if hunk:
            old_left = int(hunk.group(1) or 1)
            number = int(hunk.group(2))
            new_left = int(hunk.group(3) or 1)
    return lines


def is_test_path(path: str) -> bool:
    """True for a test file: under a ``tests/`` or ``test/`` folder, named ``test_*.py`` or
    ``*_test.py``, or a ``conftest.py``."""
    parts = PurePosixPath(path).parts
    if any(part in ("tests", "test") for part in parts[:-1]):
        return True
    name = parts[-1] if parts else ""
    return name == "conftest.py" or (
        name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))
    )


def is_fix_goal(goal: str) -> bool:
    """True when the goal asks to fix something (a word of :data:`FIX_WORDS`) and is not
    about the tests themselves (no word of :data:`TEST_WORDS`)."""
    words = set(_WORD.findall(goal.lower()))
    return bool(words & FIX_WORDS) and not words & TEST_WORDS


def _is_python(token: str) -> bool:
    return _PYTHON.match(PurePosixPath(token).name) is not None


def _tool_position(argv: Sequence[str], names: Iterable[str]) -> int | None:
    """The index of the token that names the tool (``pytest``, or ``pytest`` in
    ``python -m pytest``), or None when ``argv`` does not run it."""
    names = tuple(names)
    if not argv:
        return None
    if PurePosixPath(argv[0]).name in names:
        return 0
    if _is_python(argv[0]) and len(argv) > 2 and argv[1] == "-m" and argv[2] in names:
        return 2
    return None


def with_junit(argv: Sequence[str], report: str) -> list[str] | None:
    """``argv`` with a JUnit report written to ``report`` and no cache, when it runs pytest
    (``pytest``, ``py.test``, ``python -m pytest``); None when it does not. A report option of
    the repository's own is dropped (the last one would win)."""
    at = _tool_position(argv, ("pytest", "py.test"))
    if at is None:
        return None
    rest = [
        arg
        for arg in argv[at + 1 :]
        if not arg.startswith(("--junitxml", "--junit-xml", "--junit-prefix"))
    ]
    added = [f"--junitxml={report}", "-o", "junit_family=xunit1", "-p", "no:cacheprovider"]
    return [*argv[: at + 1], *added, *rest]


def with_ruff_json(argv: Sequence[str]) -> list[str] | None:
    """``argv`` printing JSON, when it is ``ruff check``; None otherwise."""
    at = _tool_position(argv, ("ruff",))
    if at is None or len(argv) <= at + 1 or argv[at + 1] != "check":
        return None
    rest: list[str] = []
    skip = False
    for arg in argv[at + 2 :]:
        if skip:
            skip = False
        elif arg == "--output-format":
            skip = True
        elif not arg.startswith("--output-format="):
            rest.append(arg)
    return [*argv[: at + 2], "--output-format=json", *rest]


def is_mypy(argv: Sequence[str]) -> bool:
    """True when ``argv`` runs mypy (``mypy ...`` or ``python -m mypy ...``)."""
    return _tool_position(argv, ("mypy",)) is not None


def relative_path(raw: str, roots: Sequence[str]) -> str:
    """A path a tool printed, repository-relative (``roots``: the tree's top folder as the
    run saw it, and as this machine sees it); '' when it is outside the repository."""
    if not raw or "\0" in raw:
        return ""
    path = PurePosixPath(raw)
    if path.is_absolute():
        for root in roots:
            if root and path.is_relative_to(root):
                path = path.relative_to(root)
                break
        else:
            return ""
    parts = [part for part in path.parts if part != "."]
    if not parts or ".." in parts:
        return ""
    return "/".join(parts)


def output_tail(run: RunResult, lines: int = 15) -> str:
    """The end of what a command printed (its errors first), for a finding."""
    text = "\n".join(part.strip() for part in (run.stdout, run.stderr) if part.strip())
    tail = "\n".join(text.splitlines()[-lines:])
    return tail[-2000:]


@dataclass(frozen=True, kw_only=True)
class TestCounts:
    """How many tests did what; -1 each when not known."""

    __test__ = False  # not a pytest test class

    passed: int = -1
    """Tests that passed."""
    failed: int = -1
    """Tests that failed."""
    errors: int = -1
    """Tests that could not run (errors in collection, setup or teardown)."""
    skipped: int = -1
    """Tests skipped (xfail included)."""

    @property
    def known(self) -> bool:
        return self.passed >= 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors + self.skipped if self.known else -1


@dataclass(frozen=True, kw_only=True)
class JunitReport:
    """What a JUnit report said: counts, and one finding per failed or errored test."""

    counts: TestCounts
    """The counts."""
    findings: tuple[Finding, ...] = ()
    """``pytest.failed`` / ``pytest.error``, at the innermost frame in the repository."""


def _read_capped(path: Path) -> bytes | str:
    """A regular file's bytes (never through a symlink), or why it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return "the test command wrote no JUnit report"
    except OSError as exc:
        return f"the JUnit report cannot be read ({exc.strerror})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "the JUnit report is not a file"
        if info.st_size > MAX_REPORT_BYTES:
            return f"the JUnit report is {info.st_size} bytes, over {MAX_REPORT_BYTES}"
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(MAX_REPORT_BYTES + 1)
    finally:
        os.close(fd)


def read_junit(path: Path, roots: Sequence[str]) -> JunitReport | str:
    """The report pytest wrote at ``path``, or why it could not be read."""
    data = _read_capped(path)
    if isinstance(data, str):
        return data
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        return "the JUnit report declares a DTD, which pytest never writes"
    try:
        root = ET.fromstring(data)  # capped, and no DTD: nothing to expand
    except ET.ParseError as exc:
        return f"the JUnit report is not XML ({exc})"
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    findings: list[Finding] = []
    for case in root.iter("testcase"):
        failure, error = case.find("failure"), case.find("error")
        if failure is not None or error is not None:
            counts["failed" if failure is not None else "errors"] += 1
            for outcome, node in (("failed", failure), ("error", error)):
                if node is not None:
                    findings.append(_case_finding(case, node, outcome, roots))
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return JunitReport(counts=TestCounts(**counts), findings=tuple(findings))


def _case_finding(
    case: ET.Element, node: ET.Element, outcome: str, roots: Sequence[str]
) -> Finding:
    text = node.text or ""
    frames = [
        (file, int(line))
        for raw, line in _FRAME.findall(text)
        if (file := relative_path(raw, roots)) and not file.startswith(".")
    ]
    if frames:
        file, line = frames[-1]  # the innermost frame in the repository
    else:
        file = relative_path(case.get("file") or "", roots)
        line_attr = case.get("line") or ""
        line = int(line_attr) + 1 if file and line_attr.isdigit() else 0  # 0-based there
    message = node.get("message") or next(iter(text.strip().splitlines()[-1:]), "")
    name = case.get("name") or "a test"
    return Finding(
        rule=f"pytest.{outcome}",
        message=f"{name}: {message}"[:MAX_MESSAGE],
        file=file,
        line=line,
    )


def ruff_findings(stdout: str, roots: Sequence[str]) -> list[tuple[str, int, str, str]]:
    """(file, line, code, message) of each diagnostic ``ruff check --output-format=json``
    printed; :class:`MalformedOutput` when it is not that."""
    found = []
    report: Any = load_json(stdout)
    if not isinstance(report, list):
        raise MalformedOutput("the diagnostics are not a list")
    for item in report:
        if not isinstance(item, dict):
            raise MalformedOutput("a diagnostic is not an object")
        location = item.get("location") or {}
        row = location.get("row", 0) if isinstance(location, dict) else 0
        code, message = item.get("code") or "syntax", item.get("message") or ""
        filename = item.get("filename")
        if not isinstance(filename, str) or not isinstance(row, int) or isinstance(row, bool):
            raise MalformedOutput("a diagnostic has no file or line")
        found.append(
            (
                relative_path(filename, roots),
                max(row, 0),
                rule_part(str(code)),
                str(message)[:MAX_MESSAGE],
            )
        )
    return found


def mypy_findings(stdout: str, roots: Sequence[str]) -> list[tuple[str, int, str, str]]:
    """(file, line, code, message) of each ``file:line: error: message  [code]`` line mypy
    printed (notes are left out)."""
    found = []
    for line in stdout.splitlines():
        match = _MYPY.match(line.rstrip())
        if match is None:
            continue
        code = match.group("code") or match.group("severity")
        found.append(
            (
                relative_path(match.group("file"), roots),
                int(match.group("line")),
                code,
                match.group("message")[:MAX_MESSAGE],
            )
        )
    return found


def exit_finding(rule: str, what: str, run: RunResult) -> Finding:
    """The finding for a command that exited with a failure status, with its output's end."""
    tail = output_tail(run)
    message = f"{what} exited with status {run.exit_code}" + (f":\n{tail}" if tail else "")
    return Finding(rule=rule, message=message)


def judge_lint(
    command: Sequence[str],
    run: RunResult,
    roots: Sequence[str],
    touched: Mapping[str, set[int]],
) -> tuple[list[Finding], str]:
    """Findings and detail of the repository's linter. ``ruff check`` (printing JSON, see
    :func:`with_ruff_json`): its diagnostics on lines the change added (``touched``: path
    -> added lines) are errors ``lint.<code>``, the others are counted in the detail. Any
    other linter passes or fails by its exit status."""
    if with_ruff_json(command) is None or run.exit_code not in (0, 1):
        return ([] if run.exit_code == 0 else [exit_finding("lint.exit", "the linter", run)]), ""
    try:
        diagnostics = ruff_findings(run.stdout, roots)
    except MalformedOutput as exc:
        message = f"ruff's JSON could not be read ({exc}); it exited with {run.exit_code}"
        return [Finding(rule="lint.output", message=message[:MAX_MESSAGE])], ""
    findings = [
        Finding(rule=f"lint.{code}", message=message, file=file, line=line)
        for file, line, code, message in diagnostics
        if line in touched.get(file, ())
    ]
    others = len(diagnostics) - len(findings)
    detail = f"{others} finding(s) on lines the change did not touch" if others else ""
    return findings, detail


def judge_typecheck(
    command: Sequence[str],
    run: RunResult,
    roots: Sequence[str],
    touched: Mapping[str, set[int]],
) -> tuple[list[Finding], str]:
    """Findings and detail of the repository's type checker. mypy: its errors in files the
    change touched are errors ``typecheck.<code>``, those elsewhere warnings. Any other type
    checker (or a mypy that printed no error line) passes or fails by its exit status."""
    errors = mypy_findings(run.stdout, roots) if is_mypy(command) else []
    if not errors:
        if run.exit_code == 0:
            return [], ""
        return [exit_finding("typecheck.exit", "the type checker", run)], ""
    findings = [
        Finding(
            rule=f"typecheck.{rule_part(code)}",
            message=message,
            file=file,
            line=line,
            severity="error" if file in touched else "warning",
        )
        for file, line, code, message in errors
    ]
    elsewhere = sum(f.severity == "warning" for f in findings)
    detail = f"{elsewhere} error(s) in files the change did not touch" if elsewhere else ""
    return findings, detail
