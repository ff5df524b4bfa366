"""The shared vocabulary: typed records that every stage speaks.

These are plain frozen dataclasses; the store maps them to rows, the CLI renders them, and the
workflow passes their ``to_dict()`` forms between durable steps.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "CheckReport",
    "CheckResult",
    "Finding",
    "GateOutcome",
    "Risk",
    "TaskState",
]


class TaskState(enum.StrEnum):
    """Where a task is in its life. Terminal states never change again."""

    INVALID = "invalid"  # rejected at the door: inputs did not fit the schema
    QUEUED = "queued"
    RUNNING = "running"
    WAITING_INPUT = "waiting_input"  # no tier could write it: a person supplies the code
    PAUSED = "paused"  # every tier that could serve would break a budget
    RESUMING = "resuming"  # a person supplied code or resumed it; a worker picks it up
    WAITING_APPROVAL = "waiting_approval"
    APPROVED = "approved"
    RELEASING = "releasing"  # a canary rollout is under way
    PUBLISHED = "published"  # released to its target
    DONE = "done"  # finished; its job kind has no release target
    FAILED = "failed"  # checks still failed when attempts ran out
    REJECTED = "rejected"  # a person rejected it at the gate
    DENIED = "denied"  # policy refused it at the gate
    ROLLED_BACK = "rolled_back"  # was published, then rolled back
    COMPENSATED = "compensated"  # a step after the release failed; earlier effects were undone
    ERROR = "error"  # a stage crashed (infrastructure or a bug), not the code's fault

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def settled(self) -> bool:
        """Nothing more happens without a person: terminal, or waiting for one."""
        return self in _TERMINAL or self in _WAITING


_WAITING = frozenset({TaskState.WAITING_APPROVAL, TaskState.WAITING_INPUT, TaskState.PAUSED})


_TERMINAL = frozenset(
    {
        TaskState.INVALID,
        TaskState.PUBLISHED,
        TaskState.DONE,
        TaskState.FAILED,
        TaskState.REJECTED,
        TaskState.DENIED,
        TaskState.ROLLED_BACK,
        TaskState.COMPENSATED,
        TaskState.ERROR,
    }
)


class Risk(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class GateOutcome(enum.StrEnum):
    AUTO = "auto"  # released without a person
    NEEDS_APPROVAL = "needs_approval"
    DENY = "deny"


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One problem a check found, precise enough to feed back to a generator."""

    rule: str
    """Stable id of the rule that fired (e.g. ``html.img-alt``, ``pytest.failed``)."""
    message: str
    """What is wrong, in words a generator or a person can act on."""
    file: str = ""
    """Workspace-relative file the finding is about, when there is one."""
    line: int = 0
    """1-based line, or 0 when not known."""
    severity: str = "error"
    """``error`` fails the check; ``warning`` is reported only."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(**data)

    def location(self) -> str:
        if not self.file:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    """The outcome of one check on one workspace."""

    check: str
    """The check's name as the job kind lists it."""
    passed: bool
    """True when no error-severity finding was raised and the check ran to the end."""
    findings: tuple[Finding, ...] = ()
    """What it found, most important first."""
    duration_ms: float = 0.0
    """Wall-clock time the check took, sandbox included."""
    detail: str = ""
    """Extra words, e.g. why the check could not run or which limit stopped it."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "passed": self.passed,
            "findings": [f.to_dict() for f in self.findings],
            "duration_ms": round(self.duration_ms, 1),
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(
            check=data["check"],
            passed=bool(data["passed"]),
            findings=tuple(Finding.from_dict(f) for f in data.get("findings", [])),
            duration_ms=float(data.get("duration_ms", 0.0)),
            detail=str(data.get("detail", "")),
        )


@dataclass(frozen=True, kw_only=True)
class CheckReport:
    """Every check's result for one attempt: what the repair loop and the gate read."""

    results: tuple[CheckResult, ...] = ()
    """One entry per check, in the job kind's order."""
    sandbox: str = ""
    """The sandbox backend the checks ran in (a weaker backend is recorded here)."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Warnings about how the checks ran (e.g. an unisolated backend)."""

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "sandbox": self.sandbox,
            "notes": list(self.notes),
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckReport:
        return cls(
            results=tuple(CheckResult.from_dict(r) for r in data.get("results", [])),
            sandbox=str(data.get("sandbox", "")),
            notes=tuple(data.get("notes", [])),
        )
