"""The shared vocabulary: typed records that every stage speaks.

These are plain frozen dataclasses; the store maps them to rows, the CLI renders them, and the
workflow passes their ``to_dict()`` forms between durable steps.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "PENDING_CLOSE",
    "TRANSITIONS",
    "CheckReport",
    "CheckResult",
    "DecisionKind",
    "Finding",
    "GateOutcome",
    "ReleaseState",
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

    def can_become(self, other: TaskState) -> bool:
        """Whether a task in this state may move to ``other`` (see ``TRANSITIONS``)."""
        return other in TRANSITIONS[self]


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


_CRASHED = frozenset({TaskState.ERROR})
"""Where any task that has not ended goes when a stage crashes after its retries."""

TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.INVALID: frozenset(),
    TaskState.QUEUED: frozenset({TaskState.RUNNING}) | _CRASHED,
    TaskState.RUNNING: frozenset(
        {
            TaskState.WAITING_INPUT,
            TaskState.PAUSED,
            TaskState.WAITING_APPROVAL,
            TaskState.RELEASING,
            TaskState.PUBLISHED,
            TaskState.DONE,
            TaskState.FAILED,
            TaskState.DENIED,
            TaskState.COMPENSATED,
        }
    )
    | _CRASHED,
    TaskState.WAITING_INPUT: frozenset({TaskState.RESUMING}) | _CRASHED,
    TaskState.PAUSED: frozenset({TaskState.RESUMING}) | _CRASHED,
    TaskState.RESUMING: frozenset({TaskState.RUNNING}) | _CRASHED,
    TaskState.WAITING_APPROVAL: frozenset({TaskState.APPROVED, TaskState.REJECTED}) | _CRASHED,
    TaskState.APPROVED: frozenset(
        {TaskState.RELEASING, TaskState.PUBLISHED, TaskState.DONE, TaskState.COMPENSATED}
    )
    | _CRASHED,
    TaskState.RELEASING: frozenset(
        {TaskState.PUBLISHED, TaskState.ROLLED_BACK, TaskState.COMPENSATED}
    )
    | _CRASHED,
    # A release that went live can still be taken back by a person (or a monitor).
    TaskState.PUBLISHED: frozenset({TaskState.ROLLED_BACK}),
    TaskState.DONE: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.REJECTED: frozenset(),
    TaskState.DENIED: frozenset(),
    TaskState.ROLLED_BACK: frozenset(),
    TaskState.COMPENSATED: frozenset(),
    TaskState.ERROR: frozenset(),
}
"""Every move a task may make: from a state to the states it may become. Setting a task to
the state it is already in is always allowed (a step that re-ran after a crash)."""

PENDING_CLOSE: frozenset[tuple[TaskState, TaskState]] = frozenset(
    {(TaskState.WAITING_APPROVAL, TaskState.REJECTED)}
)
"""Moves into a terminal state that a workflow has still to close: a person's rejection is
recorded at once and carried out (remembered, audited, closed) by the decision workflow, so
the task is not finished until that workflow sets it again."""


class ReleaseState(enum.StrEnum):
    """Where a release is: baking as a canary, live, or gone."""

    CANARY = "canary"  # beside the live version, on a share of the traffic
    PAUSED = "paused"  # a canary a person paused
    LIVE = "live"
    REPLACED = "replaced"  # a newer release took its path
    ROLLED_BACK = "rolled_back"
    WITHDRAWN = "withdrawn"  # its effect was compensated

    @property
    def baking(self) -> bool:
        return self in (ReleaseState.CANARY, ReleaseState.PAUSED)


class DecisionKind(enum.StrEnum):
    """What a decision row records: a person's or the policy's word on a task."""

    APPROVED = "approved"
    REJECTED = "rejected"
    ESCALATED = "escalated"  # an approval waited too long
    PROVIDED = "provided"  # a person supplied the code
    RESUMED = "resumed"  # a person resumed a task paused on a budget
    ROLLED_BACK = "rolled_back"  # a person rolled its release back
    POLICY_AUTO = "policy:auto"
    POLICY_NEEDS_APPROVAL = "policy:needs_approval"
    POLICY_DENY = "policy:deny"


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
