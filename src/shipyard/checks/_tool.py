"""Shared host-side helpers for checks that run an external analyser and read its JSON.

The analysers (ruff, bandit, detect-secrets) run inside the sandbox; everything here runs on
the host and treats what they printed as untrusted text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from shipyard.checks._base import JOB_DIR
from shipyard.model import Finding
from shipyard.sandbox import WORK, RunResult

__all__ = [
    "MalformedOutput",
    "crashed",
    "int_field",
    "load_json",
    "object_field",
    "objects",
    "output_finding",
    "rule_part",
    "text_field",
    "workspace_file",
]

_RULE_PART = re.compile(r"[^A-Za-z0-9_-]+")
MAX_MESSAGE = 500


class MalformedOutput(ValueError):
    """The analyser's output did not have the shape the check expects."""


def crashed(name: str, run: RunResult) -> list[Finding]:
    """The finding for an analyser that exited with a failure status."""
    tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
    detail = " | ".join(line[:200] for line in tail) or "no output"
    return [
        Finding(
            rule=f"{name}.crashed",
            message=f"exited with status {run.exit_code}: {detail}",
        )
    ]


def load_json(text: str) -> Any:
    """The decoded document; :class:`MalformedOutput` when it is not JSON at all."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedOutput(f"not JSON ({exc})") from exc


def output_finding(name: str, problem: object) -> Finding:
    """The finding for output the check could not read."""
    message = f"unreadable {name} output: {problem}"
    return Finding(rule=f"{name}.output", message=message[:MAX_MESSAGE])


def objects(value: Any, what: str) -> list[dict[str, Any]]:
    """``value`` as a list of JSON objects; :class:`MalformedOutput` when it is not one."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise MalformedOutput(f"{what} is not a list of objects")
    return value


def object_field(item: dict[str, Any], key: str) -> dict[str, Any]:
    """An object field of one report entry (``{}`` when missing)."""
    value = item.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedOutput(f"field {key!r} is not an object")
    return value


def text_field(item: dict[str, Any], key: str, limit: int = MAX_MESSAGE) -> str:
    """A string field of one report entry (``""`` when missing), cut to ``limit`` characters."""
    value = item.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedOutput(f"field {key!r} is not a string")
    return value[:limit]


def int_field(item: dict[str, Any], key: str) -> int:
    """A non-negative integer field (a line number); 0 when missing."""
    value = item.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedOutput(f"field {key!r} is not a line number")
    return value


def rule_part(raw: str, default: str = "unknown") -> str:
    """A tool's code (``F401``, ``B602``, ``AWS Access Key``) made safe for a rule id."""
    cleaned = _RULE_PART.sub("-", raw).strip("-")[:64]
    return cleaned or default


def workspace_file(raw: str, workspace: Path) -> str | None:
    """A path a tool reported, as a workspace-relative POSIX path.

    Tools report paths relative to their working folder (``./a.py``) or absolute, as the
    sandbox saw them (``/sandbox/work/a.py`` under bubblewrap, the workspace itself under
    the process backend). Returns ``""`` for a path that cannot be placed in the workspace
    and ``None`` for a path inside the job kind's folder, which is never reported.
    """
    if not raw or "\0" in raw:
        return ""
    path = PurePosixPath(raw)
    if path.is_absolute():
        for root in (str(workspace.resolve()), str(workspace.absolute()), WORK):
            if path.is_relative_to(root):
                path = path.relative_to(root)
                break
        else:
            return ""
    parts = path.parts
    if not parts or ".." in parts:
        return ""
    if parts[0] == JOB_DIR:
        return None
    return path.as_posix()
