"""Checks: plugins that turn a workspace into a structured CheckReport, run in a sandbox.

Built in: ``compile``, ``html``, ``jsonld``, ``pytest``, ``command``, ``ruff``, ``bandit``,
``secrets``, ``jsonschema``. A repository change is verified as a whole by
:func:`verify_change`: the repository's own commands, these checks on the changed files and
the import guard.
"""

from __future__ import annotations

from shipyard.checks._base import (
    JOB_DIR,
    Check,
    ProbeCheck,
    check_folder,
    prepare_workspace,
    run_checks,
    safe_relative_path,
)
from shipyard.checks._repo import ChangeVerification, verify_change
from shipyard.checks._repo_tools import added_lines
from shipyard.checks.bandit import BanditCheck
from shipyard.checks.command import CommandCheck
from shipyard.checks.compile import CompileCheck
from shipyard.checks.html import HtmlCheck
from shipyard.checks.jsonld import JsonldCheck
from shipyard.checks.jsonschema import JsonschemaCheck
from shipyard.checks.pytest import PytestCheck
from shipyard.checks.ruff import RuffCheck
from shipyard.checks.secrets import SecretsCheck

__all__ = [
    "BUILTIN_CHECKS",
    "JOB_DIR",
    "ChangeVerification",
    "Check",
    "ProbeCheck",
    "added_lines",
    "check_folder",
    "prepare_workspace",
    "run_checks",
    "safe_relative_path",
    "verify_change",
]

BUILTIN_CHECKS: dict[str, Check] = {
    check.name: check
    for check in (
        CompileCheck(),
        HtmlCheck(),
        JsonldCheck(),
        PytestCheck(),
        CommandCheck(),
        RuffCheck(),
        BanditCheck(),
        SecretsCheck(),
        JsonschemaCheck(),
    )
}
