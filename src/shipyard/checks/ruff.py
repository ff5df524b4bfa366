"""The ``ruff`` check: ruff's lint diagnostics on the generated Python.

ruff runs inside the sandbox on the workspace, never on ``_job/``. The output cannot
configure or silence its checker: ``--isolated`` ignores any pyproject.toml or ruff.toml it
brings, ``# noqa`` comments and ignore files are not honoured, and the interpreter runs in
isolated mode so a generated ``ruff.py`` cannot stand in for ruff. Option ``select`` (a list
of rule codes or prefixes) replaces the default selection, E, F, W and B. Every diagnostic
is an error finding ``ruff.<CODE>`` (``ruff.invalid-syntax`` for code ruff cannot parse).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from shipyard.checks._base import JOB_DIR
from shipyard.checks._tool import (
    MalformedOutput,
    crashed,
    int_field,
    load_json,
    object_field,
    objects,
    output_finding,
    rule_part,
    text_field,
    workspace_file,
)
from shipyard.jobs import CheckSpec
from shipyard.model import Finding
from shipyard.sandbox import RunResult

__all__ = ["DEFAULT_SELECT", "RuffCheck"]

DEFAULT_SELECT = ("E", "F", "W", "B")
"""Rules checked when the job kind does not say: pycodestyle, pyflakes, bugbear."""

_SELECTOR = re.compile(r"^(ALL|[A-Z]+[0-9]*)$")


def _select(spec: CheckSpec) -> list[str] | None:
    """The rule selectors to pass to ruff, or None when option ``select`` is not valid."""
    select = spec.options.get("select", list(DEFAULT_SELECT))
    if not isinstance(select, list) or not select:
        return None
    if not all(isinstance(code, str) and _SELECTOR.match(code) for code in select):
        return None
    return list(select)


class RuffCheck:
    name = "ruff"

    def command(self, spec: CheckSpec) -> list[str]:
        select = _select(spec)
        if select is None:
            return [sys.executable, "-I", "-c", ""]  # interpret() explains
        return [
            sys.executable,
            "-I",
            "-m",
            "ruff",
            "check",
            "--output-format",
            "json",
            "--no-cache",
            "--isolated",
            "--exit-zero",
            "--no-fix",
            "--no-respect-gitignore",
            "--ignore-noqa",
            f"--exclude=./{JOB_DIR}",
            f"--select={','.join(select)}",
            ".",
        ]

    def interpret(self, spec: CheckSpec, run: RunResult, workspace: Path) -> list[Finding]:
        if _select(spec) is None:
            return [
                Finding(
                    rule="ruff.config",
                    message="option 'select' must be a non-empty list of rule codes "
                    'such as ["E", "F401"]',
                )
            ]
        if run.exit_code != 0:
            return crashed(self.name, run)
        try:
            return _findings(load_json(run.stdout), workspace)
        except MalformedOutput as exc:
            return [output_finding(self.name, exc)]


def _findings(report: Any, workspace: Path) -> list[Finding]:
    findings = []
    for item in objects(report, "the diagnostics"):
        file = workspace_file(text_field(item, "filename", limit=4096), workspace)
        if file is None:
            continue  # the job kind's own files are not the output
        code = text_field(item, "code", limit=64) or text_field(item, "name", limit=64)
        findings.append(
            Finding(
                rule=f"ruff.{rule_part(code)}",
                message=text_field(item, "message") or f"ruff rule {code}",
                file=file,
                line=int_field(object_field(item, "location"), "row"),
            )
        )
    return findings
