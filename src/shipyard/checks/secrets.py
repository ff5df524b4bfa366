"""The ``secrets`` check: credentials written into the output (keys, tokens, passwords).

detect-secrets scans every file of the workspace inside the sandbox, never ``_job/``, and
never verifies a candidate over the network (``--no-verify``). The output cannot silence
its checker: ``pragma: allowlist secret`` comments are not honoured, and the interpreter
runs in isolated mode so a generated module cannot stand in for detect-secrets.

Each secret is an error finding ``secrets.<type>`` (``secrets.aws-access-key``,
``secrets.private-key``) with its file and line. The secret itself, and its hash, are
never put in a finding: findings are stored and fed back to generators. Option
``disable_plugins`` (a list of detect-secrets plugin names, e.g. ``["IPPublicDetector"]``)
turns detectors off for job kinds whose output legitimately trips them.
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

__all__ = ["SecretsCheck"]

_PLUGIN = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_ALLOWLIST_FILTER = "detect_secrets.filters.allowlist.is_line_allowlisted"


def _disabled(spec: CheckSpec) -> list[str] | None:
    """Plugins to turn off, or None when option ``disable_plugins`` is not valid."""
    plugins = spec.options.get("disable_plugins", [])
    if not isinstance(plugins, list):
        return None
    if not all(isinstance(p, str) and _PLUGIN.match(p) for p in plugins):
        return None
    return list(plugins)


class SecretsCheck:
    name = "secrets"

    def command(self, spec: CheckSpec) -> list[str]:
        disabled = _disabled(spec)
        if disabled is None:
            return [sys.executable, "-I", "-c", ""]  # interpret() explains
        return [
            sys.executable,
            "-I",
            "-m",
            "detect_secrets",
            "--cores",
            "1",
            "scan",
            "--all-files",
            "--no-verify",
            "--exclude-files",
            f"^{JOB_DIR}/",
            "--disable-filter",
            _ALLOWLIST_FILTER,
            *[arg for plugin in disabled for arg in ("--disable-plugin", plugin)],
            ".",
        ]

    def interpret(self, spec: CheckSpec, run: RunResult, workspace: Path) -> list[Finding]:
        if _disabled(spec) is None:
            return [
                Finding(
                    rule="secrets.config",
                    message="option 'disable_plugins' must be a list of detect-secrets "
                    'plugin names such as ["IPPublicDetector"]',
                )
            ]
        if run.exit_code != 0:
            return crashed(self.name, run)
        try:
            return _findings(load_json(run.stdout), workspace)
        except MalformedOutput as exc:
            return [output_finding(self.name, exc)]


def _findings(report: Any, workspace: Path) -> list[Finding]:
    if not isinstance(report, dict):
        raise MalformedOutput("the report is not an object")
    results = report.get("results", {})
    if not isinstance(results, dict):
        raise MalformedOutput("'results' is not an object")
    findings = []
    for name, secrets in sorted(results.items()):
        for item in objects(secrets, f"the results of {name[:200]!r}"):
            raw = text_field(item, "filename", limit=4096) or name
            file = workspace_file(raw, workspace)
            if file is None:
                continue  # the job kind's own files are not the output
            kind = text_field(item, "type", limit=64) or "secret"
            findings.append(
                Finding(
                    rule=f"secrets.{rule_part(kind.lower(), 'secret')}",
                    message=f"possible {kind} in the output (value withheld); "
                    "remove it and read it from configuration at run time",
                    file=file,
                    line=int_field(item, "line_number"),
                )
            )
    return findings
