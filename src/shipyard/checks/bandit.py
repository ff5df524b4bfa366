"""The ``bandit`` check: security issues bandit finds in the generated Python.

bandit runs inside the sandbox on the workspace, never on ``_job/``. The output cannot
silence its checker: ``# nosec`` comments are not honoured, a ``.bandit`` file it brings is
not read, and the interpreter runs in isolated mode so a generated ``bandit.py`` cannot
stand in for bandit.

Each issue is a finding ``bandit.<test id>`` (``bandit.B602``). It is an error when its
severity is at least option ``fail_on`` (``low``, ``medium`` or ``high``; default
``medium``) and bandit is at least medium-confident about it; otherwise a warning. A file
bandit could not scan (a syntax error, say) is an error ``bandit.error``: what was not
scanned is not vouched for.
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
    objects,
    output_finding,
    rule_part,
    text_field,
    workspace_file,
)
from shipyard.jobs import CheckSpec
from shipyard.model import Finding
from shipyard.sandbox import RunResult

__all__ = ["BanditCheck"]

_RANK = {"UNDEFINED": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3}
_FAIL_ON = {"low": 1, "medium": 2, "high": 3}
_MIN_CONFIDENCE = _RANK["MEDIUM"]

# bandit quotes the literal in hard-coded password findings (B105-B107): keep it out.
_PASSWORD = re.compile(r"^(Possible hardcoded password)\b.*$", re.DOTALL)


def _threshold(spec: CheckSpec) -> int | None:
    """The lowest severity rank that fails the check, or None when ``fail_on`` is not valid."""
    fail_on = spec.options.get("fail_on", "medium")
    return _FAIL_ON.get(fail_on.lower()) if isinstance(fail_on, str) else None


class BanditCheck:
    name = "bandit"

    def command(self, spec: CheckSpec) -> list[str]:
        return [
            sys.executable,
            "-I",
            "-m",
            "bandit",
            "--recursive",
            "--format",
            "json",
            "--quiet",
            "--exit-zero",
            "--ignore-nosec",
            "--ini",
            "/dev/null",  # never a .bandit file found in the workspace
            "--exclude",
            f"./{JOB_DIR}/",
            ".",
        ]

    def interpret(self, spec: CheckSpec, run: RunResult, workspace: Path) -> list[Finding]:
        threshold = _threshold(spec)
        if threshold is None:
            return [
                Finding(
                    rule="bandit.config",
                    message="option 'fail_on' must be 'low', 'medium' or 'high'",
                )
            ]
        if run.exit_code != 0:
            return crashed(self.name, run)
        try:
            return _findings(load_json(run.stdout), workspace, threshold)
        except MalformedOutput as exc:
            return [output_finding(self.name, exc)]


def _findings(report: Any, workspace: Path, threshold: int) -> list[Finding]:
    if not isinstance(report, dict):
        raise MalformedOutput("the report is not an object")
    findings = []
    for item in objects(report.get("results", []), "'results'"):
        file = workspace_file(text_field(item, "filename", limit=4096), workspace)
        if file is None:
            continue  # the job kind's own files are not the output
        severity = text_field(item, "issue_severity", limit=16).upper() or "UNDEFINED"
        confidence = text_field(item, "issue_confidence", limit=16).upper() or "UNDEFINED"
        failing = (
            _RANK.get(severity, 0) >= threshold and _RANK.get(confidence, 0) >= _MIN_CONFIDENCE
        )
        text = _PASSWORD.sub(r"\1 (value withheld)", text_field(item, "issue_text"))
        findings.append(
            Finding(
                rule=f"bandit.{rule_part(text_field(item, 'test_id', limit=16))}",
                message=f"{text or 'security issue'} "
                f"(severity {severity}, confidence {confidence})",
                file=file,
                line=int_field(item, "line_number"),
                severity="error" if failing else "warning",
            )
        )
    for item in objects(report.get("errors", []), "'errors'"):
        file = workspace_file(text_field(item, "filename", limit=4096), workspace)
        if file is None:
            continue
        reason = text_field(item, "reason") or "unknown reason"
        findings.append(
            Finding(rule="bandit.error", message=f"bandit could not scan it: {reason}", file=file)
        )
    return findings
