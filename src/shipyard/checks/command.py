"""The ``command`` check: any command (``run = ["make", "lint"]``) must exit 0."""

from __future__ import annotations

from pathlib import Path

from shipyard.jobs import CheckSpec
from shipyard.model import Finding
from shipyard.sandbox import RunResult

__all__ = ["CommandCheck"]


class CommandCheck:
    name = "command"

    def command(self, spec: CheckSpec) -> list[str]:
        argv = spec.options.get("run")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            return ["false"]  # interpret() explains
        return list(argv)

    def interpret(self, spec: CheckSpec, run: RunResult, workspace: Path) -> list[Finding]:
        if not isinstance(spec.options.get("run"), list):
            return [
                Finding(rule="command.config", message="option 'run' must be a list of strings")
            ]
        if run.exit_code == 0:
            return []
        tail = (run.stderr or run.stdout).strip().splitlines()[-5:]
        return [
            Finding(
                rule="command.exit",
                message=f"exited with status {run.exit_code}: " + " | ".join(tail),
            )
        ]
