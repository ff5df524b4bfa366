"""Shipyard's tables (SQLAlchemy 2, typed). Schema changes go through Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database.

    PostgreSQL keeps the offset; SQLite stores text and hands back naive values, which are
    UTC by construction here. Reading through this type makes both aware, so no caller has
    to guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def include_object(obj: Any, name: str | None, kind: str, reflected: bool, other: Any) -> bool:
    """For schema comparisons: skip the full-text search objects migrations make by hand
    (SQLite's FTS5 table and its shadow tables; PostgreSQL's tsvector column and index)."""
    return not (name or "").startswith(("memory_fts", "text_tsv", "ix_memory_text_tsv"))


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


def _own_key(context: Any) -> str:
    """A task's business key when none is given: its own id."""
    return str(context.get_current_parameters()["id"])


def _submitter(context: Any) -> str:
    """Who submitted a task, when no one else is named: the name it was submitted under."""
    return str(context.get_current_parameters()["submitted_by"])


def _decider(context: Any) -> str:
    """Who made a decision, when no one else is named: the name it was made under."""
    return str(context.get_current_parameters()["actor"])


def _own_seq(context: Any) -> int:
    """An audit entry's place in its lane, when none is given: its sequence number (so in
    the one lane SQLite appends to, and in the single chain before lanes, the two agree)."""
    return int(context.get_current_parameters()["seq"])


class TaskRow(Base):
    """One job kind applied to one set of inputs; one durable workflow (same id)."""

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    domain: Mapped[str] = mapped_column(String(64))
    job_kind: Mapped[str] = mapped_column(String(64))
    input_key: Mapped[str] = mapped_column(String(200), default="")
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    inputs_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(300), default="")
    batch_id: Mapped[str] = mapped_column(String(40), default="")
    state: Mapped[str] = mapped_column(String(24))
    submitted_by: Mapped[str] = mapped_column(String(120))
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    artifact_id: Mapped[str] = mapped_column(String(71), default="")
    risk: Mapped[str] = mapped_column(String(16), default="")
    """The risk the gate assessed."""
    approvals_required: Mapped[int] = mapped_column(Integer, default=0)
    """Distinct approvals the policies require before release (set at the gate)."""
    business_key: Mapped[str] = mapped_column(String(160), default=_own_key, server_default="")
    """What the task is about, for the world outside: ``KIND:INPUT_KEY:DIGEST`` (``~N`` from
    the second generation on); its effects' idempotency keys derive from it. A task that
    has no natural key (an invalid row, a task older than the key) is its own: its id. Empty
    only for a task an older release submitted against this schema (its id stands in)."""
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    """1 for the first task of its business key; ``submit --again`` makes the next."""
    submitted_principal: Mapped[str] = mapped_column(
        String(120), default=_submitter, server_default=""
    )
    """The authenticated person who submitted it: ``submitted_by`` unless they acted for
    someone else (``--as`` under an ``act_for`` policy). Never approves the task either."""

    __table_args__ = (
        Index("ix_tasks_state", "state"),
        Index("ix_tasks_kind_key", "job_kind", "input_key"),
        Index("ix_tasks_submitted_at", "submitted_at"),
        Index(
            "uq_tasks_business_key",
            "business_key",
            unique=True,
            postgresql_where=text("business_key <> ''"),
            sqlite_where=text("business_key <> ''"),
        ),
    )


class StepRow(Base):
    """One stage of one task: timings, how many times it started, what it produced."""

    __tablename__ = "task_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))
    runs: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    summary: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (UniqueConstraint("task_id", "stage", "attempt", name="uq_step"),)


class AttemptRow(Base):
    """One generation and its check report inside a task."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    tier: Mapped[str] = mapped_column(String(64), default="")
    """The router's tier that served it (``human`` for a person's code)."""
    route: Mapped[str] = mapped_column(Text, default="")
    """The router's reasons: what it chose, skipped and fell back from, one per line."""
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    prompt_hash: Mapped[str] = mapped_column(String(71))
    prompt: Mapped[str] = mapped_column(Text)
    files: Mapped[dict[str, Any]] = mapped_column(JSON)
    feedback: Mapped[list[Any]] = mapped_column(JSON, default=list)
    recalled: Mapped[list[Any]] = mapped_column(JSON, default=list)
    reply: Mapped[str] = mapped_column(Text, default="")
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    finish_reason: Mapped[str] = mapped_column(String(32), default="")
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=Decimal(0))
    cost_source: Mapped[str] = mapped_column(String(16), default="")
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    passed: Mapped[bool | None] = mapped_column(default=None)
    generated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    change: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """A repository change's context, per-file summary and verification facts."""
    budget_lease: Mapped[str] = mapped_column(String(80), default="", server_default="")
    """The owner of the day-budget leases its call was held under ('' for none)."""

    __table_args__ = (
        UniqueConstraint("task_id", "number", name="uq_attempt"),
        Index("ix_attempts_generated_at", "generated_at"),
        Index("ix_attempts_budget_lease", "budget_lease"),
    )


class ArtifactRow(Base):
    """An immutable, content-addressed version of generated output (id = sha256 of manifest)."""

    __tablename__ = "artifacts"

    id: Mapped[str] = mapped_column(String(71), primary_key=True)
    job_kind: Mapped[str] = mapped_column(String(64))
    input_key: Mapped[str] = mapped_column(String(200), default="")
    files: Mapped[dict[str, Any]] = mapped_column(JSON)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    first_task_id: Mapped[str] = mapped_column(String(40))
    collected_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    """When ``artifacts gc`` removed its files (its records stay for lineage)."""

    __table_args__ = (Index("ix_artifacts_kind_key", "job_kind", "input_key"),)


class ProvenanceRow(Base):
    """Where one task's artifact came from: one record per (task, artifact)."""

    __tablename__ = "provenance"

    task_id: Mapped[str] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    envelope: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """The signed in-toto statement (DSSE), re-signed when approvals are added."""
    signed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class DecisionRow(Base):
    """A gate decision: policy's, or a person's approval / rejection, with who and why."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    decision: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime())
    principal: Mapped[str] = mapped_column(String(120), default=_decider, server_default="")
    """The authenticated person behind the decision; ``actor`` is whom they acted for (the
    same person unless an ``act_for`` policy let them act for another). Approvals count
    distinct principals."""

    __table_args__ = (Index("ix_decisions_task", "task_id"),)


class ReleaseRow(Base):
    """An artifact put live on a target by a task (at most one per task)."""

    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), unique=True)
    artifact_id: Mapped[str] = mapped_column(ForeignKey("artifacts.id"))
    target: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(300))
    version: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16))
    """canary (stages running), paused, live, rolled_back."""
    released_at: Mapped[datetime] = mapped_column(UtcDateTime())
    """When the candidate was deployed (the release began)."""
    rolled_back_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    stage: Mapped[int] = mapped_column(Integer, default=-1)
    """Index into the plan's stages being baked (-1: deployed, no traffic yet)."""
    weight: Mapped[float] = mapped_column(Float, default=0.0)
    """Percent of the path's traffic on the candidate now."""
    stage_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    plan: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The rollout plan and rendered probes it runs under (fixed at deploy)."""
    verdicts: Mapped[list[Any]] = mapped_column(default=list)
    """One record per analysed stage: the verdict and the numbers behind it."""
    reason: Mapped[str] = mapped_column(Text, default="")
    command: Mapped[str] = mapped_column(String(16), default="")
    """A person's pending instruction: pause, resume, promote or rollback."""
    command_by: Mapped[str] = mapped_column(String(100), default="")
    detected_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    """When the analysis (or a person) called for the rollback."""
    restored_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    """When all traffic was back on the baseline; minus detected_at is the time to recover."""
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class ReleaseSampleRow(Base):
    """What the gateway measured for one release arm over a short window (about a second)."""

    __tablename__ = "release_samples"
    __table_args__ = (Index("ix_release_samples_task", "task_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(40))
    arm: Mapped[str] = mapped_column(String(10))
    """``candidate`` or ``baseline`` (a rollout's arms), or ``live``: a live version on a
    path with no candidate, recorded for its monitor."""
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    requests: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    """Responses with a 5xx status (or no response at all)."""
    latencies: Mapped[list[Any]] = mapped_column()
    """Milliseconds, a uniform sample of at most a thousand of the window's requests."""


class ReplayRunRow(Base):
    """A replay: recorded tasks re-run in simulation under a candidate configuration.

    Its own record, apart from the live ones it read (which it never writes)."""

    __tablename__ = "replay_runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(100))
    from_step: Mapped[str] = mapped_column(String(16))
    candidate: Mapped[dict[str, Any]] = mapped_column()
    """The candidate's config file, policy files and policy version."""
    baseline: Mapped[dict[str, Any]] = mapped_column()
    """The live policy version it was compared with."""
    summary: Mapped[dict[str, Any]] = mapped_column()
    report: Mapped[dict[str, Any]] = mapped_column()


class MemoryRow(Base):
    """Something the pipeline remembers for next time (outcomes, reasons, findings)."""

    __tablename__ = "memory_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    job_kind: Mapped[str] = mapped_column(String(64))
    input_key: Mapped[str] = mapped_column(String(200), default="")
    task_id: Mapped[str] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    embedder: Mapped[str] = mapped_column(String(64), default="")
    """The embedder that made ``vector`` (searching with another one is refused)."""
    dim: Mapped[int] = mapped_column(Integer, default=0)
    vector: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    """float32, ``dim`` values, unit length."""
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)

    __table_args__ = (
        Index("ix_memory_lookup", "namespace", "job_kind", "input_key"),
        Index("ix_memory_task_kind", "task_id", "kind"),
        Index("ix_memory_vectors", "namespace", "embedder", "id"),
        Index("ix_memory_expires_at", "expires_at"),
    )


class AuditRow(Base):
    """One entry of the append-only audit log: who did what to what, the decision and why.

    The log is a few hash chains (lanes) appended to side by side: each entry carries the
    hash of the one before it in its lane (``prev_hash``) and its own hash over both, so
    changing, removing or inserting an entry breaks its lane from there on; some entries also
    anchor the other lanes' heads (see ``shipyard.observe._audit``).
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    """Unique and rising in the order entries were appended, across lanes; not gapless (a
    rolled-back append leaves a number unused on PostgreSQL)."""
    at: Mapped[str] = mapped_column(String(40))
    """ISO 8601 UTC time, stored as text so it hashes the same on every database."""
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    resource: Mapped[str] = mapped_column(String(300))
    decision: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text, default="")
    task_id: Mapped[str] = mapped_column(String(40), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    lane: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    """The chain it belongs to (the single chain written before lanes is lane 1)."""
    lane_seq: Mapped[int] = mapped_column(Integer, default=_own_seq, server_default="0")
    """Its place in its lane: 1, 2, 3, ... without gaps."""
    prev_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """The sequence number of the entry before it in its lane (0 for a lane's first)."""
    anchors: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """Other lanes' heads when it was written, ``{lane: [entries, hash, seq]}``, or None."""
    format: Mapped[int] = mapped_column(Integer, default=2, server_default="1")
    """1: an entry of the single chain, hashed over its own fields; 2: a lane's entry, hashed
    over them and over ``lane``, ``lane_seq``, ``prev_seq`` and ``anchors`` too."""

    __table_args__ = (
        Index("ix_audit_task", "task_id"),
        Index("ix_audit_lane", "lane", "lane_seq", unique=True),
    )


class AuditHeadRow(Base):
    """A lane's head: its last entry. An append locks one lane's head, so a lane never forks
    while appends to different lanes never wait for each other."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    """The lane."""
    seq: Mapped[int] = mapped_column(Integer, default=0)
    """The sequence number of the lane's last entry (0 before its first)."""
    hash: Mapped[str] = mapped_column(String(64))
    """The hash of the lane's last entry (the lane's genesis hash before its first)."""
    entries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """How many entries the lane holds."""


class ToolCallRow(Base):
    """One tool call, journalled by its idempotency key: a repeated call replays the result."""

    __tablename__ = "tool_calls"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    """Its place in the task's saga (the release is 0)."""
    tool: Mapped[str] = mapped_column(String(64))
    capability: Mapped[str] = mapped_column(String(64))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    """calling, done, failed, compensated, irreversible."""
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    calls: Mapped[int] = mapped_column(Integer, default=0)
    """How many times the tool was actually invoked under this key."""
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    compensation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    compensated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)

    __table_args__ = (Index("ix_tool_calls_task", "task_id"),)


class SpanRow(Base):
    """One finished trace span (OpenTelemetry), kept for ``shipyard trace`` and ``stats``."""

    __tablename__ = "spans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trace_id: Mapped[str] = mapped_column(String(32))
    span_id: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[str] = mapped_column(String(16), default="")
    task_id: Mapped[str] = mapped_column(String(40), default="")
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    start_ns: Mapped[int] = mapped_column(BigInteger)
    end_ns: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(8))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)

    __table_args__ = (
        Index("ix_spans_task", "task_id"),
        Index("ix_spans_trace", "trace_id"),
        Index("ix_spans_start", "start_ns"),
    )


class WorkerRow(Base):
    """A worker process: where it runs, what it serves, and when it was last heard from.

    Its id is its DBOS executor id, so the workflows it holds are the system database's
    pending workflows under that id. A live worker that finds another one silent past the
    recovery time (or stopped, or dead on its own machine) takes its workflows over.
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    machine: Mapped[str] = mapped_column(String(64))
    """The machine's id (``/etc/machine-id``, else the host name): pids compare within it."""
    pid: Mapped[int] = mapped_column(Integer)
    domains: Mapped[list[Any]] = mapped_column(JSON)
    version: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16))
    """``running``, ``draining``, ``stopped`` (said goodbye) or ``dead`` (taken over silent)."""
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UtcDateTime())
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    taken_over_by: Mapped[str] = mapped_column(String(80), default="", server_default="")
    taken_over_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    recovered: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Workflows handed back to the queues when it was taken over."""

    __table_args__ = (Index("ix_workers_heartbeat", "heartbeat_at"),)


class LockRow(Base):
    """A named row to lock: what serializes budget leases and call windows across workers."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class BudgetHoldRow(Base):
    """Spend set aside for a model call in flight: the call's worst case, until it is recorded.

    Budgets count attempts (what was spent) plus unexpired holds (what may be) plus what
    workers' leases still reserve, under a row lock, so two workers can never both take the
    last of a budget.
    """

    __tablename__ = "budget_holds"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(40))
    domain: Mapped[str] = mapped_column(String(64))
    usd: Mapped[Decimal] = mapped_column(Numeric(14, 6))
    tokens: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    """A worker that dies mid-call leaves its hold; it stops counting after this."""
    lease: Mapped[str] = mapped_column(String(80), default="", server_default="")
    """The lease owner whose day-budget leases also cover this call ('' for none): such a
    hold counts against the task's budget only, the leases against the day budgets."""

    __table_args__ = (Index("ix_budget_holds_expires", "expires_at"),)


class BudgetLeaseRow(Base):
    """A worker's share of a day budget, reserved so its calls need no shared lock.

    The owner (one process) holds calls against its lease in memory; what the lease still
    reserves is ``usd``/``tokens`` less what the owner's attempts (``attempts.budget_lease``)
    spent in the scope that day. A budget counts spend, holds and every unexpired lease's
    reserve, so leases never take more than the budget. See ``orchestrator/_leases.py``.
    """

    __tablename__ = "budget_leases"

    id: Mapped[str] = mapped_column(String(240), primary_key=True)
    """``OWNER SCOPE DAY``: one lease per owner, budget and day."""
    owner: Mapped[str] = mapped_column(String(80))
    scope: Mapped[str] = mapped_column(String(120))
    """The budget: ``all domains today`` or ``domain NAME today``."""
    domain: Mapped[str] = mapped_column(String(64), default="")
    """The domain a domain budget counts ('' for all domains)."""
    day: Mapped[datetime] = mapped_column(UtcDateTime())
    """Midnight UTC of the day the budget counts."""
    usd: Mapped[Decimal] = mapped_column(Numeric(14, 6))
    """The most the owner's calls may spend under it that day."""
    tokens: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    """The database's time after which it reserves nothing (its owner renews it in use)."""

    __table_args__ = (Index("ix_budget_leases_scope", "scope", "day"),)


class ModelCallRow(Base):
    """One model call started, by rate-limit key: the sliding window every worker shares."""

    __tablename__ = "model_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(120))
    at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_model_calls_key_at", "key", "at"),)


class ArtifactBlobRow(Base):
    """One distinct file content of the database artifact backend (content-addressed)."""

    __tablename__ = "artifact_blobs"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class ArtifactManifestRow(Base):
    """One artifact version's canonical manifest in the database artifact backend."""

    __tablename__ = "artifact_manifests"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    manifest: Mapped[bytes] = mapped_column(LargeBinary)


class ApiTokenRow(Base):
    """A token for the REST API and the console: a person, a role, and the token's digest.

    The token itself is shown once when it is made and never stored.
    """

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    person: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    """``viewer``, ``operator``, ``approver`` or ``admin``."""
    digest: Mapped[str] = mapped_column(String(64))
    """sha256 of the whole token (it carries 256 random bits: no slow hash is needed)."""
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)


class IdempotencyKeyRow(Base):
    """A submission made under a client's ``Idempotency-Key``: what it answered, for retries.

    Written in the transaction that records the submission's tasks, so a retry finds either
    both or neither. Kept as long as the tasks (forever).
    """

    __tablename__ = "idempotency_keys"

    person: Mapped[str] = mapped_column(String(120), primary_key=True)
    """Whose key it is (an API token's person): keys are scoped per person."""
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    """sha256 of the request (job kind, rows, ``again``): the same key with another body is
    refused."""
    batch_id: Mapped[str] = mapped_column(String(40))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The submission's result as data, answered again to a retry."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class NotifyEventRow(Base):
    """One CloudEvent in the notifications outbox, recorded with what it is about.

    Its id derives from the key its recorder gave (a step that runs twice records it once),
    and is the CloudEvent's ``id`` and the ``webhook-id`` of every delivery of it. A sending
    worker routes it: one delivery per ``[notify.NAME]`` endpoint that takes its type.
    """

    __tablename__ = "notify_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key: Mapped[str] = mapped_column(String(300), unique=True)
    """What the recorder named it by (``TASK:approval.needed:ATTEMPT``, ...)."""
    type: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(300), default="")
    """The CloudEvent's ``source``, fixed when the event is routed."""
    subject: Mapped[str] = mapped_column(String(300), default="")
    time: Mapped[datetime] = mapped_column(UtcDateTime())
    """When it happened (the CloudEvent's ``time``)."""
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    routed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    """When its deliveries were made (None: no sending worker has seen it yet)."""

    __table_args__ = (
        Index("ix_notify_events_routed", "routed_at"),
        Index("ix_notify_events_time", "time"),
    )


class NotifyDeliveryRow(Base):
    """One event on its way to one endpoint: pending, then delivered or dead."""

    __tablename__ = "notify_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("notify_events.id", ondelete="CASCADE"))
    endpoint: Mapped[str] = mapped_column(String(64))
    """The ``[notify.NAME]`` it goes to."""
    state: Mapped[str] = mapped_column(String(16))
    """``pending``, ``delivered`` or ``dead``."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """POSTs started (one counts even when its worker died before the answer)."""
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    leased_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    """While a worker is sending it: no other worker takes it until then."""
    lease_owner: Mapped[str] = mapped_column(String(80), default="")
    """The worker (or command) sending it; a lease of a worker taken over is void."""
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)
    """The last answer's HTTP status (None: no answer)."""
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)

    __table_args__ = (
        UniqueConstraint("event_id", "endpoint", name="uq_notify_delivery"),
        Index("ix_notify_deliveries_due", "state", "endpoint", "next_attempt_at"),
    )


class NotifyCountRow(Base):
    """Deliveries' outcomes counted per endpoint, for the Prometheus counter (never swept)."""

    __tablename__ = "notify_counts"

    endpoint: Mapped[str] = mapped_column(String(64), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    """``delivered``, ``failed`` (an attempt that will be retried) or ``dead``."""
    count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class MonitorRow(Base):
    """The watch over one target's live releases: its durable workflow and each path's state.

    The workflow's id derives from ``target`` and ``generation``; a monitor that stopped
    (nothing live) is started again under the next generation, so a second start of a
    watching monitor is the same workflow.
    """

    __tablename__ = "monitors"

    target: Mapped[str] = mapped_column(String(64), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16))
    """``watching`` (its workflow runs) or ``stopped`` (nothing was live)."""
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    """When its last round ended."""
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    note: Mapped[str] = mapped_column(Text, default="")
    """What the last round found, in words (e.g. waiting for a gateway)."""
    paths: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Live path -> its release, probe results so far and last verdict."""


class IncidentRow(Base):
    """An anomaly on a live path: what was seen, what was done, and when it ended.

    At most one incident per path and cause is open at a time (a partial unique index); the
    time to recover is ``resolved_at - detected_at``.
    """

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(300))
    task_id: Mapped[str] = mapped_column(String(40))
    """The live release's task (its release key)."""
    cause: Mapped[str] = mapped_column(String(16))
    """``errors``, ``latency`` or ``probe``."""
    state: Mapped[str] = mapped_column(String(16))
    """``open`` or ``resolved``."""
    action: Mapped[str] = mapped_column(String(16))
    """``rolled_back`` (the monitor withdrew the release) or ``alerted``."""
    reason: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The verdict that opened it, with the numbers behind it."""
    window_start: Mapped[datetime] = mapped_column(UtcDateTime())
    """Where the window that showed it began: the path's baseline ends here while it is open."""
    detected_at: Mapped[datetime] = mapped_column(UtcDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None)
    resolved_by: Mapped[str] = mapped_column(String(120), default="")
    """``monitor`` (recovered, or traffic restored by its rollback) or the person who closed it."""
    resolution: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (
        Index(
            "uq_incidents_open",
            "target",
            "path",
            "cause",
            unique=True,
            sqlite_where=text("state = 'open'"),
            postgresql_where=text("state = 'open'"),
        ),
        Index("ix_incidents_detected", "detected_at"),
    )
