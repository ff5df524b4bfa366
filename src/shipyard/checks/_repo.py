"""Verifying a repository change: the repository's own commands, Shipyard's checks, the guard.

:func:`verify_change` takes a working copy with the change applied and gives one
:class:`~shipyard.model.CheckReport` with these results, in this order:

1. ``change`` — what the change is: its own refusals (:attr:`Change.findings`), an empty
   change (``repo.empty-change``), or a change to test files only for a goal that asks for a
   fix (``repo.only-tests``: it hides the bug by changing the tests; see
   :func:`~shipyard.checks._repo_tools.is_fix_goal`). An empty or refused change is not
   run: nothing else is checked.
2. ``test`` — ``[repos.NAME] test`` in the sandbox, on a throwaway copy of the changed tree
   (so tests cannot change the working copy), with the environment mounted read-only, the
   copy's borrowed git objects mounted read-only at their own paths, and no network. pytest
   writes a JUnit report that gives the counts and one finding per failed test; pytest's
   "no tests ran" is ``repo.no-tests``, never a pass.
3. ``lint`` and 4. ``typecheck`` — when the repository names them, each on its own throwaway
   copy. ``ruff check`` is read as JSON: diagnostics on lines the change added are errors,
   the others are counted in ``detail``. mypy's errors in changed files are errors, those
   elsewhere warnings. Other tools pass or fail by exit status.
5. ``compile``, ``ruff``, ``bandit`` (changed Python files) and ``secrets`` (every changed
   text file): Shipyard's own check plugins, which the repository's configuration cannot
   silence. Their findings are judged on the lines the change added: errors there, warnings
   elsewhere; bandit's elsewhere are dropped and counted.
6. ``imports`` — the import guard (:func:`~shipyard.repos.guard_imports`).

Every finding's ``file`` is repository-relative. Each command runs under ``limits``.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shipyard.checks._base import Check, check_folder
from shipyard.checks._repo_tools import (
    MAX_FINDINGS,
    TestCounts,
    added_lines,
    exit_finding,
    is_fix_goal,
    is_test_path,
    judge_lint,
    judge_typecheck,
    read_junit,
    with_junit,
    with_ruff_json,
)
from shipyard.checks.bandit import BanditCheck
from shipyard.checks.compile import CompileCheck
from shipyard.checks.ruff import RuffCheck
from shipyard.checks.secrets import SecretsCheck
from shipyard.config import RepoSettings
from shipyard.jobs import CheckSpec
from shipyard.model import CheckReport, CheckResult, Finding
from shipyard.repos import (
    ENV_MOUNT,
    Change,
    Environment,
    PackageIndex,
    WorkingCopy,
    guard_imports,
    resolve_index_url,
    source_roots,
    working_files,
)
from shipyard.sandbox import WORK, Limits, Mount, RunResult, SandboxBackend, run_environment

__all__ = ["OWN_RUFF_SELECT", "ChangeVerification", "verify_change"]

_ASSERT = "bandit.B101"
"""bandit's "use of assert": the way tests check, so not held against a test file."""

OWN_RUFF_SELECT = ("E4", "E7", "E9", "F", "B")
"""Rules of Shipyard's own ``ruff`` check on a change: ruff's defaults (imports, statements,
syntax, pyflakes) and bugbear: mistakes, not style, which is the repository's own linter's."""

_OWN: dict[str, Check] = {
    check.name: check for check in (CompileCheck(), RuffCheck(), BanditCheck(), SecretsCheck())
}


@dataclass(frozen=True, kw_only=True)
class ChangeVerification:
    """What verifying a repository change found, and the facts a policy may read."""

    report: CheckReport
    """Every result, in the order :mod:`shipyard.checks._repo` lists."""
    facts: Mapping[str, Any] = field(default_factory=dict)
    """``tests_passed``, ``tests_failed``, ``tests_errors``, ``tests_skipped`` (-1 when not
    known), ``new_dependencies`` (sorted distribution names) and ``checks`` (the results
    that ran): plain JSON values."""


def verify_change(
    copy: WorkingCopy,
    change: Change,
    settings: RepoSettings,
    *,
    goal: str,
    environment: Environment,
    backend: SandboxBackend,
    limits: Limits,
    index: PackageIndex | None,
) -> ChangeVerification:
    """Verify ``change``, already applied in ``copy``'s tree, for ``goal``: see the module's
    docstring for what runs. ``index``: the package index the import guard asks (None: the
    one ``settings.index_url`` names). Failures are findings; only a sandbox that cannot
    run at all raises (:class:`~shipyard.errors.SandboxError`)."""
    results = [_change_result(change, goal)]
    counts = TestCounts()
    new_dependencies: list[str] = []
    if not (change.empty or change.refused):
        runner = _Runner(
            copy=copy,
            files=tuple(working_files(copy)),
            environment=environment,
            backend=backend,
            limits=limits,
        )
        touched = {f.path: added_lines(f.patch) for f in change.files if f.status != "deleted"}
        test, counts = _test_result(runner, settings.test)
        results.append(test)
        if settings.lint:
            results.append(_tool_result(runner, "lint", settings.lint, touched))
        if settings.typecheck:
            results.append(_tool_result(runner, "typecheck", settings.typecheck, touched))
        results += _own_checks(copy, change, touched, backend, limits)
        imports, new_dependencies = _imports_result(copy, change, settings, environment, index)
        results.append(imports)
    notes = [] if backend.isolated else [f"sandbox backend {backend.name!r} is not isolated"]
    if environment.own and len(results) > 1:
        notes.append("the repository has no setup: its tests ran with Shipyard's interpreter")
    facts = {
        "tests_passed": counts.passed,
        "tests_failed": counts.failed,
        "tests_errors": counts.errors,
        "tests_skipped": counts.skipped,
        "new_dependencies": new_dependencies,
        "checks": [r.check for r in results],
    }
    report = CheckReport(results=tuple(results), sandbox=backend.name, notes=tuple(notes))
    return ChangeVerification(report=report, facts=facts)


def _imports_result(
    copy: WorkingCopy,
    change: Change,
    settings: RepoSettings,
    environment: Environment,
    index: PackageIndex | None,
) -> tuple[CheckResult, list[str]]:
    """The import guard's result, and the new dependencies (sorted)."""
    started = time.perf_counter()
    guarded = guard_imports(
        copy,
        change,
        index=index or PackageIndex(resolve_index_url(settings.index_url)),
        environment=environment,
    )
    detail = f"{guarded.checked} added import(s) checked"
    imports = CheckResult(
        check="imports",
        passed=guarded.passed,
        findings=guarded.findings,
        duration_ms=(time.perf_counter() - started) * 1000,
        detail="; ".join([detail, *guarded.notes]),
    )
    return imports, sorted(guarded.new_dependencies)


def _change_result(change: Change, goal: str) -> CheckResult:
    findings = list(change.findings)
    if change.empty:
        findings.append(
            Finding(
                rule="repo.empty-change",
                message="the change touches no file: nothing was done toward the goal",
            )
        )
    elif all(is_test_path(path) for path in change.paths) and is_fix_goal(goal):
        findings.append(
            Finding(
                rule="repo.only-tests",
                message="the goal asks for a fix but the change only touches tests "
                f"({', '.join(change.paths[:5])}): changing the tests hides the bug; fix "
                "the code the tests exercise",
                file=change.paths[0],
            )
        )
    detail = ""
    if change.refused:
        detail = "the change is refused: nothing else was checked"
    elif change.empty:
        detail = "nothing changed: nothing else was checked"
    passed = not any(f.severity == "error" for f in findings)
    return CheckResult(check="change", passed=passed, findings=tuple(findings), detail=detail)


@dataclass(frozen=True, kw_only=True)
class _Runner:
    """Runs the repository's commands, each on a throwaway copy of the changed tree."""

    copy: WorkingCopy
    files: tuple[str, ...]
    """The tree's files (not ignored ones): what a throwaway copy holds, with .git."""
    environment: Environment
    backend: SandboxBackend
    limits: Limits

    @property
    def env_at(self) -> str | None:
        """Where a run sees the environment (None: at its own path)."""
        return ENV_MOUNT if self.backend.isolated else None

    def seen(self, workspace: Path) -> str:
        """The throwaway copy's folder as a run sees it."""
        return WORK if self.backend.isolated else str(workspace)

    @contextmanager
    def staged(self) -> Iterator[Path]:
        """A sandbox workspace holding a copy of the tree and its .git."""
        with self.backend.workspace() as workspace:
            for path in self.files:
                target = workspace / path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(self.copy.path / path, target, follow_symlinks=False)
            shutil.copytree(self.copy.path / ".git", workspace / ".git", symlinks=True)
            yield workspace

    def command(self, argv: Sequence[str]) -> list[str]:
        return self.environment.command(argv, at=self.env_at)

    def missing(self, command: Sequence[str], workspace: Path) -> str | None:
        """Why ``command`` cannot start (None when it can): a program not on the run's PATH
        is the repository's configuration, not the sandbox, to blame."""
        program = command[0]
        if "/" in program:
            candidates = [program]
        else:
            path = (
                self.variables(workspace).get("PATH")
                or run_environment(home="/", tmpdir="/tmp")["PATH"]
            )
            candidates = [f"{folder}/{program}" for folder in path.split(":") if folder]
        for candidate in candidates:
            host = self._on_host(candidate, workspace)
            if host is not None and os.access(host, os.X_OK) and host.is_file():
                return None
        where = "the repository's environment" if not self.environment.own else "the sandbox"
        return f"`{program}` is not installed in {where}: add it to setup, or change the command"

    def _on_host(self, path: str, workspace: Path) -> Path | None:
        at, env = self.env_at, self.environment.path
        if env is not None and at is not None and (path == at or path.startswith(at + "/")):
            return env / path[len(at) + 1 :]
        seen = self.seen(workspace)
        if path.startswith(seen + "/"):
            return workspace / path[len(seen) + 1 :]
        return Path(path) if path.startswith("/") else workspace / path

    def variables(self, workspace: Path) -> dict[str, str]:
        seen = self.seen(workspace)
        roots = [f"{seen}/{root}" if root else seen for root in source_roots(self.files)]
        found = self.environment.variables(at=self.env_at, python_path=roots)
        if not self.environment.own:
            found["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = ""  # the repository's plugins are its own
        return found

    def run(self, command: Sequence[str], workspace: Path) -> RunResult:
        mounts = [Mount(source=store) for store in self.copy.borrowed]
        if self.environment.path is not None:
            mounts.append(Mount(source=self.environment.path, target=self.env_at or ""))
        return self.backend.run(
            command,
            workdir=workspace,
            limits=self.limits,
            env=self.variables(workspace),
            mounts=mounts,
            egress=None,
            in_place=True,
        )

    def stopped(self, what: str, run: RunResult) -> Finding:
        """The finding for a run a limit ended."""
        limit = run.killed_by or "a"
        if run.killed_by == "timeout":
            limit = f"timeout ({self.limits.timeout_seconds:g} s)"
        return Finding(
            rule="sandbox.limit",
            message=f"the {what} command was stopped by the {limit} limit after "
            f"{run.duration_ms / 1000:.1f} s",
        )


def _test_result(runner: _Runner, argv: Sequence[str]) -> tuple[CheckResult, TestCounts]:
    started = time.perf_counter()
    counts = TestCounts()
    with runner.staged() as workspace:
        command = runner.command(argv)
        name = f".shipyard-junit-{os.urandom(6).hex()}.xml"
        seen = runner.seen(workspace)
        junit = with_junit(command, f"{seen}/{name}") if command else None
        problem = runner.missing(command, workspace) if command else "the test command is empty"
        if problem is not None:
            findings = [Finding(rule="repo.test-command", message=problem)]
        else:
            run = runner.run(junit or command, workspace)
            roots = (seen, str(workspace), str(workspace.resolve()))
            if run.killed_by:
                findings = [runner.stopped("test", run)]
            elif junit is not None:
                findings, counts = _pytest_verdict(run, workspace / name, roots)
            elif run.exit_code != 0:
                findings = [exit_finding("repo.tests-failed", "the test command", run)]
            else:
                findings = []
    detail = ""
    if counts.known:
        detail = (
            f"{counts.passed} of {counts.total} tests passed ({counts.failed} failed, "
            f"{counts.errors} errors, {counts.skipped} skipped)"
        )
    return _result("test", findings, started, detail), counts


def _pytest_verdict(
    run: RunResult, report: Path, roots: Sequence[str]
) -> tuple[list[Finding], TestCounts]:
    """Findings and counts of a pytest run, from its exit status and JUnit report."""
    read = read_junit(report, roots)
    if run.exit_code == 5 or (not isinstance(read, str) and read.counts.total == 0):
        message = "pytest collected no tests: the repository's tests did not run"
        zero = TestCounts(passed=0, failed=0, errors=0, skipped=0)
        return [Finding(rule="repo.no-tests", message=message)], zero
    if isinstance(read, str):
        if run.exit_code == 0:
            return [Finding(rule="pytest.no-report", message=read, severity="warning")], (
                TestCounts()
            )
        return [exit_finding("repo.tests-failed", "pytest", run)], TestCounts()
    findings = list(read.findings)
    if run.exit_code != 0 and not findings:
        findings.append(exit_finding("repo.tests-failed", "pytest", run))
    return findings, read.counts


def _result(check: str, findings: Sequence[Finding], started: float, detail: str) -> CheckResult:
    """A result with at most :data:`MAX_FINDINGS` findings (errors first)."""
    ordered = sorted(findings, key=lambda f: f.severity != "error")
    if len(ordered) > MAX_FINDINGS:
        more = f"{len(ordered) - MAX_FINDINGS} more findings not shown"
        detail = f"{detail}; {more}" if detail else more
    return CheckResult(
        check=check,
        passed=not any(f.severity == "error" for f in findings),
        findings=tuple(ordered[:MAX_FINDINGS]),
        duration_ms=(time.perf_counter() - started) * 1000,
        detail=detail,
    )


def _tool_result(
    runner: _Runner, check: str, argv: Sequence[str], touched: Mapping[str, set[int]]
) -> CheckResult:
    """The repository's linter or type checker on a throwaway copy of the tree."""
    started = time.perf_counter()
    with runner.staged() as workspace:
        command = runner.command(argv)
        if check == "lint":
            command = with_ruff_json(command) or command
        problem = runner.missing(command, workspace)
        if problem is not None:
            found = [Finding(rule=f"repo.{check}-command", message=problem)]
            return _result(check, found, started, "")
        run = runner.run(command, workspace)
        if run.killed_by:
            return _result(check, [runner.stopped(check, run)], started, "")
        roots = (runner.seen(workspace), str(workspace), str(workspace.resolve()))
        judge = judge_lint if check == "lint" else judge_typecheck
        findings, detail = judge(command, run, roots, touched)
    return _result(check, findings, started, detail)


def _own_checks(
    copy: WorkingCopy,
    change: Change,
    touched: Mapping[str, set[int]],
    backend: SandboxBackend,
    limits: Limits,
) -> list[CheckResult]:
    """Shipyard's compile, ruff, bandit and secrets checks on the changed files."""
    text = [
        f.path
        for f in change.files
        if f.status != "deleted" and not f.binary and f.mode != "120000"
    ]
    python = [path for path in text if path.endswith(".py")]
    specs = {
        "compile": CheckSpec(name="compile"),
        "ruff": CheckSpec(name="ruff", options={"select": list(OWN_RUFF_SELECT)}),
        "bandit": CheckSpec(name="bandit"),
        "secrets": CheckSpec(name="secrets"),
    }
    found: dict[str, CheckResult] = {}
    for names, paths in ((("compile", "ruff", "bandit"), python), (("secrets",), text)):
        with tempfile.TemporaryDirectory(prefix="shipyard-changed-") as folder:
            staged = _stage_files(copy.path, paths, Path(folder))
            if not staged:
                for name in names:
                    found[name] = CheckResult(check=name, passed=True, detail="no file to check")
                continue
            report = check_folder(
                Path(folder),
                [specs[name] for name in names],
                backend=backend,
                limits=limits,
                registry=_OWN,
            )
            for result in report.results:
                found[result.check] = _on_added_lines(result, touched)
    return [found[name] for name in specs]


def _stage_files(tree: Path, paths: Sequence[str], folder: Path) -> int:
    """Copy the regular files among ``paths`` (none reached through a symlink) from ``tree``
    into ``folder``; how many were copied."""
    copied = 0
    top = tree.resolve()
    for path in paths:
        source = tree / path
        try:
            if source.resolve() != top / path or not stat.S_ISREG(os.lstat(source).st_mode):
                continue
        except OSError:
            continue
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target, follow_symlinks=False)
        copied += 1
    return copied


def _on_added_lines(result: CheckResult, touched: Mapping[str, set[int]]) -> CheckResult:
    """Judge a Shipyard check's findings by the lines the change added: errors there stay
    errors; elsewhere bandit's are dropped (counted) and the others become warnings. Findings
    about no line (a syntax error's file, a crash, a limit) are kept as they are."""
    if result.check == "compile":
        return result
    kept: list[Finding] = []
    dropped = asserts = 0
    for finding in result.findings:
        if result.check == "bandit" and finding.rule == _ASSERT and is_test_path(finding.file):
            asserts += 1  # asserts are how tests speak; stripped under -O is no risk there
        elif not finding.file or not finding.line or finding.line in touched.get(finding.file, ()):
            kept.append(finding)
        elif result.check == "bandit":
            dropped += 1
        else:
            kept.append(replace(finding, severity="warning"))
    notes = [result.detail] if result.detail else []
    if dropped:
        notes.append(f"{dropped} issue(s) on lines the change did not add")
    if asserts:
        notes.append(f"{asserts} assert(s) in tests")
    detail = "; ".join(notes)
    passed = not any(f.severity == "error" for f in kept)
    return replace(result, findings=tuple(kept), passed=passed, detail=detail)
