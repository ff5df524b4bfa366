"""Checks: plugins that turn a workspace into a structured CheckReport, run in a sandbox.

Built in: ``compile``, ``html``, ``jsonld``, ``pytest``, ``command``.
"""

from __future__ import annotations

from shipyard.checks._base import (
    JOB_DIR,
    Check,
    ProbeCheck,
    prepare_workspace,
    run_checks,
    safe_relative_path,
)
from shipyard.checks.command import CommandCheck
from shipyard.checks.compile import CompileCheck
from shipyard.checks.html import HtmlCheck
from shipyard.checks.jsonld import JsonldCheck
from shipyard.checks.pytest import PytestCheck

__all__ = [
    "BUILTIN_CHECKS",
    "JOB_DIR",
    "Check",
    "ProbeCheck",
    "prepare_workspace",
    "run_checks",
    "safe_relative_path",
]

BUILTIN_CHECKS: dict[str, Check] = {
    check.name: check
    for check in (CompileCheck(), HtmlCheck(), JsonldCheck(), PytestCheck(), CommandCheck())
}
