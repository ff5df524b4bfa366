"""The check contract and the pipeline that runs a job kind's checks in a sandbox.

A check is two halves: the command it runs inside the sandbox, and how the host reads that
run into findings. The host never executes the workspace's code itself.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

from shipyard.errors import InputError
from shipyard.jobs import CheckSpec, JobKind
from shipyard.model import CheckReport, CheckResult, Finding
from shipyard.sandbox import Limits, RunResult, SandboxBackend

__all__ = [
    "JOB_DIR",
    "Check",
    "ProbeCheck",
    "check_folder",
    "prepare_workspace",
    "run_checks",
    "safe_relative_path",
]

JOB_DIR = "_job"
"""Where the job kind's folder (tests, schemas) is copied inside the workspace."""


class Check(Protocol):
    """One kind of check. ``interpret`` must not trust anything the run printed."""

    name: str

    def command(self, spec: CheckSpec) -> list[str]:
        """The argv to run inside the sandbox, with the workspace as the working folder."""
        ...

    def interpret(self, spec: CheckSpec, run: RunResult, workspace: Path) -> list[Finding]:
        """Findings from the run; an empty list means the check passed."""
        ...


class ProbeCheck:
    """A check whose sandbox half is a probe in :mod:`shipyard.checks._probe`."""

    name = ""

    def command(self, spec: CheckSpec) -> list[str]:
        return [
            sys.executable,
            "-I",
            "-m",
            "shipyard.checks._probe",
            self.name,
            json.dumps(spec.options),
        ]

    def interpret(self, spec: CheckSpec, run: RunResult, workspace: Path) -> list[Finding]:
        if run.exit_code != 0:
            tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
            return [Finding(rule=f"{self.name}.crashed", message=" | ".join(tail) or "no output")]
        try:
            raw = json.loads(run.stdout)
            return [Finding.from_dict(item) for item in raw]
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            return [Finding(rule=f"{self.name}.output", message=f"unreadable probe output: {exc}")]


def safe_relative_path(name: str) -> PurePosixPath:
    """A generated file's name as a path that cannot leave the workspace."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] == JOB_DIR:
        raise InputError(
            f"generated file name {name!r} is not a safe relative path",
            hint="output names must be relative, without '..', and not under _job/",
        )
    return path


def prepare_workspace(root: Path, files: Mapping[str, str], kind: JobKind | None) -> None:
    """Write the generated files, and the job kind's folder as ``_job/``, into ``root``."""
    for name, content in files.items():
        target = root / safe_relative_path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    if kind is not None:
        shutil.copytree(kind.folder, root / JOB_DIR, ignore=shutil.ignore_patterns("__pycache__"))


def run_checks(
    kind: JobKind,
    files: Mapping[str, str],
    *,
    backend: SandboxBackend,
    limits: Limits,
    registry: Mapping[str, Check],
) -> CheckReport:
    """Run every check of ``kind`` on ``files`` in a fresh workspace; the report says it all."""
    with backend.workspace() as workspace:
        prepare_workspace(workspace, files, kind)
        return _run_all(kind.checks, workspace, backend, limits, registry)


def check_folder(
    folder: Path,
    specs: Sequence[CheckSpec],
    *,
    backend: SandboxBackend,
    limits: Limits,
    registry: Mapping[str, Check],
) -> CheckReport:
    """Run ``specs`` on a copy of ``folder`` (``shipyard check DIR``); the folder is not written."""
    unknown = [s.name for s in specs if s.name not in registry]
    if unknown:
        raise InputError(
            f"unknown check(s): {', '.join(unknown)}",
            hint=f"known checks: {', '.join(sorted(registry))}",
        )
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder", hint="pass the folder to check")
    with backend.workspace() as workspace:
        shutil.copytree(folder, workspace, dirs_exist_ok=True, symlinks=True)
        return _run_all(specs, workspace, backend, limits, registry)


def _run_all(
    specs: Sequence[CheckSpec],
    workspace: Path,
    backend: SandboxBackend,
    limits: Limits,
    registry: Mapping[str, Check],
) -> CheckReport:
    notes = () if backend.isolated else (f"sandbox backend {backend.name!r} is not isolated",)
    results = tuple(_run_one(spec, workspace, backend, limits, registry) for spec in specs)
    return CheckReport(results=results, sandbox=backend.name, notes=notes)


def _run_one(
    spec: CheckSpec,
    workspace: Path,
    backend: SandboxBackend,
    limits: Limits,
    registry: Mapping[str, Check],
) -> CheckResult:
    check = registry[spec.name]
    started = time.perf_counter()
    run = backend.run(check.command(spec), workdir=workspace, limits=limits)
    if run.killed_by:
        findings = [
            Finding(
                rule="sandbox.limit",
                message=f"stopped by the {run.killed_by} limit after {run.duration_ms:.0f} ms",
            )
        ]
    else:
        findings = check.interpret(spec, run, workspace)
    errors = [f for f in findings if f.severity == "error"]
    return CheckResult(
        check=spec.name,
        passed=not errors,
        findings=tuple(findings),
        duration_ms=(time.perf_counter() - started) * 1000,
        detail=f"killed by {run.killed_by}" if run.killed_by else "",
    )
