"""The API's payloads: what each route takes and returns, as pydantic models at this edge.

The response models describe the service layer's read models (``task_dict``, ``story_dict``,
``lineage``, ``releases`` ...) field by field, so the OpenAPI document says what every route
returns; the JSON is the same the service layer's dicts gave before. Where a shape is open by
nature (a task's inputs, a span's attributes, a check report) the field is an object and
says so. Times are ISO 8601 as Python writes them (``2025-01-31T09:00:00+00:00``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from shipyard.model import ReleaseState, TaskState

__all__ = [
    "Artifact",
    "ArtifactPage",
    "AuditEntry",
    "AuditPage",
    "BatchSubmission",
    "Budgets",
    "Decision",
    "Incident",
    "IncidentPage",
    "Lineage",
    "Release",
    "ReleasePage",
    "Resolution",
    "Span",
    "Stats",
    "Steered",
    "Story",
    "Submission",
    "Submitted",
    "Supplied",
    "Task",
    "TaskPage",
    "Trace",
    "Waiting",
    "WaitingPage",
]

Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda at: at.isoformat(), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A time, written as ``datetime.isoformat()`` writes it (as the API always has)."""

Open = dict[str, Any]
"""An object whose members are not fixed (inputs, attributes, reports, details)."""

# -- requests ---------------------------------------------------------------------------------

_AGAIN = (
    "Make a new task (the next generation of its business key) even for inputs already "
    "submitted; by default such a row returns the task it already has"
)


class Submission(BaseModel):
    """One task to submit."""

    model_config = ConfigDict(extra="forbid")
    job_kind: str = Field(description="The job kind, e.g. landing-page")
    inputs: Open = Field(description="The inputs, validated against its schema")
    again: bool = Field(default=False, description=_AGAIN)


class ChangeSubmission(BaseModel):
    """A change to one of the project's repositories."""

    model_config = ConfigDict(extra="forbid")
    repo: str = Field(min_length=1, max_length=64, description="The [repos.NAME] to change")
    goal: str = Field(
        min_length=1, max_length=20_000, description="What the change must achieve, in words"
    )
    base: str | None = Field(
        default=None,
        max_length=255,
        description="Branch, tag or commit to start from (default: the repository's base)",
    )
    tier: str | None = Field(
        default=None, max_length=64, description="The tier that writes it (default: configured)"
    )
    again: bool = Field(default=False, description=_AGAIN)


class ChangeSubmitted(BaseModel):
    """The task a change became."""

    task: str = Field(description="The task's id")
    existing: bool = Field(
        description="True when this goal on this base was submitted before (its task)"
    )


class BatchSubmission(BaseModel):
    """Rows of one job kind to submit together (one batch)."""

    model_config = ConfigDict(extra="forbid")
    job_kind: str
    rows: list[Open] = Field(min_length=1, max_length=10_000)
    again: bool = Field(default=False, description=_AGAIN)


class Decision(BaseModel):
    """A person's decision at the gate."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=2000)


class Supplied(BaseModel):
    """The code a person writes for a task no tier could write."""

    model_config = ConfigDict(extra="forbid")
    files: dict[str, str] = Field(min_length=1, description="file name -> content")


# -- tasks ------------------------------------------------------------------------------------


class Task(BaseModel):
    """A task: one row of input on its way through the pipeline."""

    id: str
    domain: str
    job_kind: str
    input_key: str = Field(description="The value of the job kind's key field (e.g. a SKU)")
    state: TaskState
    attempts: int = Field(description="Generation attempts so far")
    artifact: str = Field(description="The artifact its output became ('' until it passed)")
    error: str = Field(description="Why it stopped, when it stopped short ('' otherwise)")
    source: str = Field(description="Where it came from (a file and row, a request)")
    batch: str
    submitted_by: str
    submitted_at: Timestamp
    finished_at: Timestamp | None
    inputs: Open


class Rejected(BaseModel):
    """A row refused at the door, recorded as an invalid task."""

    where: str = Field(description="The row (row 2, request)")
    message: str = Field(description="What is wrong with it: the field and why")
    task_id: str


class Existing(BaseModel):
    """A row whose business key already had a task: that task, not a new one."""

    where: str = Field(description="The row (row 2, request)")
    task_id: str
    state: TaskState = Field(description="The task's state when the row was submitted")
    batch_id: str = Field(description="The batch that made the task")


class Submitted(BaseModel):
    """What a submission made of its rows."""

    batch_id: str
    submitted: list[str] = Field(
        description="Ids of the valid rows' tasks, each once, in row order: queued now, or "
        "(listed in existing) submitted before"
    )
    rejected: list[Rejected]
    existing: list[Existing] = Field(
        description="Rows whose inputs already had a task (nothing new was made)"
    )
    business_keys: dict[str, str] = Field(
        description="Each submitted task's business key (KIND:INPUT_KEY:DIGEST, ~N from the "
        "second generation on): its effects' idempotency keys derive from it",
    )


class Step(BaseModel):
    """A stage a task went through (validate, generate, check, gate, release ...)."""

    stage: str
    attempt: int
    status: str
    runs: int = Field(description="How often it ran (more than once after a crash)")
    started_at: Timestamp
    finished_at: Timestamp | None
    summary: str
    detail: Open


class Attempt(BaseModel):
    """One generation attempt and its check report."""

    number: int
    tier: str
    route: list[str] = Field(description="The tiers tried and why each was passed over")
    provider: str
    model: str
    prompt_hash: str
    files: list[str]
    passed: bool | None = Field(description="null until its checks ran")
    input_tokens: int
    output_tokens: int
    finish_reason: str
    cost_usd: float
    cost_source: str
    feedback: list[Any] = Field(description="The findings fed back into this attempt")
    recalled: list[Any] = Field(description="The memory items recalled for it (mem-N)")
    report: Open | None = Field(description="The check report: results per check, findings")
    change: Open | None = Field(
        default=None,
        description="A repository change: the context sent (files, tokens), its summary "
        "(files, lines), what verification found (test counts, new dependencies), and its "
        "diff by file with the findings at their lines; null for other job kinds",
    )


class DecisionMade(BaseModel):
    """A decision on a task: a person's, the policy's, an escalation."""

    decision: str
    actor: str
    reason: str
    at: Timestamp


class TaskRelease(BaseModel):
    """Where a task's artifact was released."""

    target: str
    path: str
    version: str
    state: ReleaseState
    released_at: Timestamp
    stages: list[float] = Field(description="The rollout's traffic shares, in per cent")
    weight: float = Field(description="The candidate's share of traffic now, in per cent")
    reason: str
    verdicts: list[Open] = Field(description="The canary's verdict at each stage")


class Story(BaseModel):
    """Everything recorded about a task (what ``shipyard show --json`` prints)."""

    task: Task
    steps: list[Step]
    attempts: list[Attempt]
    decisions: list[DecisionMade]
    provenance: Open | None = Field(description="The signed provenance record, once stored")
    release: TaskRelease | None


class Span(BaseModel):
    """One finished OpenTelemetry span."""

    trace_id: str
    span_id: str
    parent_id: str = Field(description="'' for a root span")
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    attributes: Open


class Trace(BaseModel):
    """A task's spans, each once, in start order."""

    task_id: str
    spans: list[Span]


class Waiting(Task):
    """A task at the gate, with the approvals it has and needs."""

    approvals: list[str] = Field(description="Who approved it so far")
    approvals_required: int
    risk: str
    escalated: str = Field(description="Why it was escalated ('' when it was not)")
    waiting_since: Timestamp


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` for the next (null: the end)."""

    items: list[T]
    next_cursor: str | None


class TaskPage(Page[Task]):
    """A page of tasks."""


class WaitingPage(Page[Waiting]):
    """A page of the approval queue."""


# -- artifacts --------------------------------------------------------------------------------


class Artifact(BaseModel):
    """A content-addressed version of generated output."""

    id: str
    job_kind: str
    input_key: str
    files: list[str]
    size: int = Field(description="Bytes over all its files")
    created_at: Timestamp
    tasks: list[str] = Field(
        description="The release targets this version is live on (the name is kept for "
        "the clients of v1)"
    )


class ArtifactPage(Page[Artifact]):
    """A page of artifact versions, newest first."""


class LineageArtifact(BaseModel):
    id: str
    job_kind: str
    input_key: str
    files: Open = Field(description="File name -> its digest")
    size: int
    created_at: str | None


class CheckOutcome(BaseModel):
    check: str
    passed: bool
    findings: int


class LineageAttempt(BaseModel):
    number: int
    tier: str
    provider: str
    model: str
    prompt_hash: str
    tokens: list[int] = Field(description="[input tokens, output tokens]")
    cost_usd: str
    passed: bool | None
    findings_fed_back: int
    route: list[str]
    checks: list[CheckOutcome]


class Memory(BaseModel):
    id: int
    kind: str
    text: str


class LineageDecision(BaseModel):
    decision: str
    actor: str
    reason: str
    at: str | None


class LineageRelease(BaseModel):
    target: str
    path: str
    version: str
    state: ReleaseState
    released_at: str | None
    rolled_back_at: str | None


class LineageTask(BaseModel):
    """A task that produced the artifact, back to its inputs and forward to its releases."""

    task: str
    state: TaskState
    job_kind: str
    domain: str
    input_key: str
    inputs: Open
    inputs_hash: str
    submitted_by: str
    submitted_at: str | None
    template_hash: str
    prompt_hash: str
    provider: str
    model: str
    signed: bool
    attempts: list[LineageAttempt]
    memories: list[Memory] = Field(description="Memory items recalled into its prompts")
    decisions: list[LineageDecision]
    approvals: list[Any] = Field(description="The approvals its provenance record names")
    releases: list[LineageRelease]


class Lineage(BaseModel):
    """Where an artifact came from and where it went."""

    artifact: LineageArtifact
    tasks: list[LineageTask]
    live_on: list[str] = Field(description="Targets it is live on now")


# -- releases ---------------------------------------------------------------------------------


class Release(BaseModel):
    """A release: its rollout's stage, its latest verdicts, and how fast it recovered."""

    task: str
    job_kind: str
    target: str
    path: str
    state: ReleaseState
    stages: list[float] = Field(description="The rollout's traffic shares, in per cent")
    stage: int = Field(description="The stage it is at (-1 before the first)")
    weight: float
    version: str
    reason: str
    verdicts: list[Open]
    released_at: Timestamp
    finished_at: Timestamp | None
    detected_at: Timestamp | None
    restored_at: Timestamp | None
    time_to_detect_s: float | None
    time_to_recover_ms: float | None


class ReleasePage(Page[Release]):
    """A page of releases, newest first."""


class Resolution(BaseModel):
    """A person closing an incident: what was done about it."""

    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=2000, description="What was done about it")


class Incident(BaseModel):
    """An anomaly a monitor found on a live path, what it did, and how the incident ended."""

    id: int
    target: str
    path: str
    task: str = Field(description="The live release's task")
    cause: Literal["errors", "latency", "probe"]
    state: Literal["open", "resolved"]
    action: Literal["rolled_back", "alerted"] = Field(
        description="rolled_back: the monitor withdrew the release; alerted: it only told"
    )
    reason: str
    evidence: Open = Field(description="The verdict that opened it, with the numbers behind it")
    detected_at: Timestamp
    resolved_at: Timestamp | None
    resolved_by: str = Field(description="monitor, or the person who closed it ('' while open)")
    resolution: str
    time_to_recover_s: float | None = Field(description="resolved_at - detected_at")


class IncidentPage(Page[Incident]):
    """A page of incidents, newest first."""


class Steered(BaseModel):
    """What a pause, resume, promote or rollback did: queued for a rollout under way, or
    done at once for a live release (then with the target's version now)."""

    task: str
    command: str
    state: ReleaseState
    queued: bool | None = Field(default=None, description="true: the rollout takes it next")
    version: str | None = Field(
        default=None, description="The target's version after a rollback of a live release"
    )


# -- figures, budgets, audit ------------------------------------------------------------------


class Figure(BaseModel):
    name: str
    value: float | None = Field(description="null when the window holds nothing to count")
    unit: str
    basis: str = Field(description="What it was computed from")


class Stats(BaseModel):
    """The operating figures of the tasks submitted in [since, until)."""

    since: Timestamp
    until: Timestamp
    figures: list[Figure]


class BudgetLine(BaseModel):
    scope: str
    limit_usd: str | None
    limit_tokens: int | None
    spent_usd: str
    spent_tokens: int
    paused: int = Field(description="Tasks paused on this budget")
    exhausted: bool


class Rollup(BaseModel):
    key: str
    attempts: int
    input_tokens: int
    output_tokens: int
    usd: str
    unpriced: int = Field(description="Attempts on a model with no known price")


class Budgets(BaseModel):
    """Spend against every budget today, and roll-ups per job kind, domain and day."""

    limits: list[BudgetLine]
    rollups: dict[str, list[Rollup]] = Field(description="job_kind, domain, day -> roll-ups")
    unpriced: int


class AuditEntry(BaseModel):
    """One entry of the hash-chained audit log (its lane's fields are null for entries of
    the single chain written before lanes, which are hashed without them)."""

    seq: int
    at: str
    actor: str
    action: str
    resource: str
    decision: str
    reason: str
    task_id: str
    detail: Open
    prev_hash: str
    hash: str
    lane: int | None = None
    lane_seq: int | None = None
    prev_seq: int | None = None
    anchors: Open | None = None


class AuditPage(Page[AuditEntry]):
    """A page of the audit log, in order."""
