"""The tables of ``shipyard.toml``, one pydantic model each (``[generate]``, ``[tiers.NAME]``,
``[targets.NAME]``, ...), with the rules that concern a single table.

:mod:`shipyard.config` assembles them into :class:`~shipyard.config.Settings`, checks the
rules that span tables, and loads the file; import them from there.
"""

from __future__ import annotations

import itertools
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "NOTIFY_EVENT_TYPES",
    "RESERVED_TIERS",
    "TIER_KEYS",
    "ArtifactSettings",
    "BudgetSettings",
    "DomainSettings",
    "MemorySettings",
    "MonitorSettings",
    "NamespaceSettings",
    "NotifySettings",
    "ObserveSettings",
    "PersonSettings",
    "PolicySettings",
    "PriceSettings",
    "ProjectSettings",
    "RepoSettings",
    "RolloutSettings",
    "RouterSettings",
    "SandboxSettings",
    "Section",
    "ServeSettings",
    "TargetSettings",
    "TierSettings",
    "WorkerSettings",
]


class Section(BaseModel):
    """One table of the file: unknown keys are mistakes, and settings never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectSettings(Section):
    name: str = Field(default="shipyard", description="the project's name")
    state_dir: str = Field(default=".shipyard", description="where Shipyard keeps its state")


_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_AGENT_VARIABLES = frozenset({"HOME", "SHIPYARD_GOAL", "SHIPYARD_ATTEMPT", "SHIPYARD_FEEDBACK"})
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])$")
"""An egress entry's host: a name, an IPv4 address, or an IPv6 address in brackets."""
_PORT = re.compile(r"^[0-9]{1,5}$")


class TierSettings(Section):
    """One ``[tiers.NAME]`` table: a provider and how to call it."""

    provider: str = Field(
        default="template",
        description="'template', 'openai', 'anthropic', 'replay' or 'command' (a coding agent)",
    )
    model: str = Field(default="", description="the model name the provider should use")
    base_url: str = Field(
        default="", description="the API's address, e.g. a local OpenAI-compatible server"
    )
    api_key_env: str = Field(
        default="",
        description="the variable holding the API key, read from the environment or "
        "generate.secrets_file (keys never live in this file)",
    )
    timeout_seconds: float = Field(
        default=120.0, gt=0, description="per model call; a command tier's agent's wall clock"
    )
    max_tokens: int = Field(default=4096, ge=1, description="reply length limit")
    temperature: float = Field(default=0.2, ge=0, le=2)
    calls_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="model calls this tier may start per minute, across every worker",
    )
    rate_key: str = Field(
        default="",
        description="tiers with the same key share one calls_per_minute window "
        "(e.g. one provider account); default: the tier's own name",
    )
    recorded: str = Field(
        default="",
        description="replay: a folder (relative to shipyard.toml) of recorded replies, TOML "
        "files of [[reply]] tables (goal, attempt, model, text), served before the records",
    )
    argv: list[str] = Field(
        default_factory=list,
        validate_default=True,
        description="command: the coding agent's argv, run in the working copy; "
        "placeholders {goal}, {goal_file}, {attempt}, {feedback_file}",
    )
    env: list[str] = Field(
        default_factory=list,
        description="command: names of variables the agent gets, with their values from "
        "Shipyard's environment or generate.secrets_file",
    )
    mounts: list[str] = Field(
        default_factory=list,
        description="command: files and folders (~ expanded, relative to shipyard.toml) the "
        "agent sees read-only, e.g. its installation",
    )
    egress: list[str] = Field(
        default_factory=list,
        description='command: the only "host:port" entries the agent may reach, through '
        "Shipyard's egress proxy (none: no network)",
    )

    @field_validator("argv", "env", "mounts", "egress")
    @classmethod
    def _command_only(cls, value: list[str], info: ValidationInfo) -> list[str]:
        provider = info.data.get("provider")
        if provider == "command" and info.field_name == "argv":
            if not value or any(not arg.strip() for arg in value):
                raise ValueError(
                    'a command tier runs argv = ["PROGRAM", "ARG", ...], a non-empty list of '
                    'non-empty strings, e.g. ["aider", "--yes", "--message-file", "{goal_file}"]'
                )
        elif value and provider != "command":
            raise ValueError(
                f'{info.field_name} is for command tiers (provider = "command"); '
                f"this tier's provider is {provider!r}"
            )
        return value

    @field_validator("env")
    @classmethod
    def _variable_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _VARIABLE.match(name):
                raise ValueError(
                    f"{name!r} is not a variable name (letters, digits and '_', not starting "
                    "with a digit)"
                )
            if name in _AGENT_VARIABLES:
                raise ValueError(f"{name} is set by Shipyard for the agent; it is not passed on")
        return list(dict.fromkeys(value))

    @field_validator("mounts")
    @classmethod
    def _mount_paths(cls, value: list[str]) -> list[str]:
        if any(not path.strip() for path in value):
            raise ValueError("a mount is a path to a file or folder, not an empty string")
        return value

    @field_validator("egress")
    @classmethod
    def _egress_entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            host, _, port = entry.rpartition(":")
            if not (_HOST.match(host) and _PORT.match(port) and 1 <= int(port) <= 65535):
                raise ValueError(
                    f'egress entry {entry!r} is not host:port, e.g. "api.anthropic.com:443" '
                    "(a port 1-65535 is required)"
                )
        return list(dict.fromkeys(value))


TIER_KEYS = frozenset(TierSettings.model_fields)
RESERVED_TIERS = frozenset({"auto", "human"})
"""Tier names with a fixed meaning: ``auto`` (the router picks) and ``human`` (a person)."""


class RouterSettings(Section):
    """``[generate]``: which tier serves a job kind, and how the router falls back."""

    tier: str = Field(
        default="template",
        description="tier of job kinds that name none: a [tiers] name, 'auto' or 'human'",
    )
    chain: list[str] = Field(
        default_factory=list,
        description="tiers cheapest first: 'auto' climbs it, fallbacks go down it "
        "(default: template, then [tiers] in file order)",
    )
    success_threshold: float = Field(
        default=0.7, ge=0, le=1, description="'auto' takes the cheapest tier passing this often"
    )
    success_window: int = Field(default=20, ge=1, description="recent attempts rated per tier")
    min_samples: int = Field(
        default=3, ge=1, description="attempts a tier needs before its rate counts"
    )
    tries_per_call: int = Field(
        default=3, ge=1, le=10, description="calls per attempt on rate limits, 5xx, timeouts"
    )
    breaker_failures: int = Field(
        default=3, ge=1, description="failures in a row that take a tier out of service"
    )
    breaker_cooldown_seconds: float = Field(
        default=300.0, ge=0, description="how long a tier stays out of service"
    )
    secrets_file: str = Field(
        default="",
        description="KEY=VALUE file of API keys (mode 600), relative to shipyard.toml",
    )


class BudgetSettings(Section):
    """``[budgets]``: spend limits; an absent key means no limit."""

    task_usd: float | None = Field(default=None, ge=0, description="per task, all attempts")
    task_tokens: int | None = Field(default=None, ge=0)
    day_usd: float | None = Field(default=None, ge=0, description="all domains, per UTC day")
    day_tokens: int | None = Field(default=None, ge=0)
    lease_calls: int = Field(
        default=32,
        ge=0,
        description="model calls' worst cases a worker leases from a day budget at once "
        "(at most a quarter of what is left); 0: every call holds against the day budgets "
        "under their shared lock",
    )


class PriceSettings(Section):
    input_per_mtok: float = Field(ge=0, description="US dollars per million prompt tokens")
    output_per_mtok: float = Field(ge=0, description="US dollars per million reply tokens")


class DomainSettings(Section):
    jobs: list[str] = Field(description="folders of the job kinds this domain owns")
    concurrency: int | None = Field(
        default=None,
        ge=1,
        description="tasks running at once, all workers together (default: no such cap; "
        "a cap makes every worker's dequeue a serializable claim)",
    )
    worker_concurrency: int = Field(default=4, ge=1, description="tasks at once per worker")
    tasks_per_minute: int | None = Field(
        default=None, ge=1, description="tasks this domain may start per minute, all workers"
    )
    day_usd: float | None = Field(default=None, ge=0, description="this domain, per UTC day")
    day_tokens: int | None = Field(default=None, ge=0)
    memory_reads: list[str] = Field(
        default_factory=list, description="other domains' memory this domain may recall"
    )


class RolloutSettings(Section):
    """``[targets.NAME.rollout]``: how a release reaches all of a served target's traffic."""

    stages: list[float] = Field(
        default=[5, 25, 50, 100],
        min_length=1,
        description="percent of traffic on the candidate at each stage; the last is 100",
    )
    bake_seconds: float = Field(
        default=300, ge=0, description="time on each stage before its verdict"
    )
    interval_seconds: float = Field(
        default=10, gt=0, description="how often a stage is analysed while it bakes"
    )
    min_requests: int = Field(
        default=100, ge=1, description="candidate requests per stage before a stage can pass"
    )
    max_error_rate_increase: float = Field(
        default=0.01, ge=0, le=1, description="candidate minus baseline 5xx rate that fails"
    )
    max_p95_ratio: float = Field(
        default=1.5, ge=1, description="candidate p95 latency over baseline's that fails"
    )
    confidence: float = Field(
        default=0.95, ge=0.5, le=0.9999, description="how sure the analysis is before a verdict"
    )
    max_bake_seconds: float | None = Field(
        default=None, ge=0, description="a stage short of traffic waits this long (3× bake)"
    )
    low_traffic: Literal["proceed", "rollback"] = Field(
        default="proceed",
        description="a stage still short of traffic: go on if the probes pass, or roll back",
    )
    probe_failures: int = Field(
        default=2, ge=1, description="consecutive failures of a probe that fail the stage"
    )

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: list[float]) -> list[float]:
        if any(not 0 < w <= 100 for w in value):
            raise ValueError("each stage is a percentage above 0 and at most 100")
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("stages must rise (e.g. [5, 25, 50, 100])")
        if value[-1] != 100:
            raise ValueError("the last stage must be 100 (the candidate takes all traffic)")
        return value


class MonitorSettings(Section):
    """``[targets.NAME.monitor]``: how the target's live releases are watched after promotion."""

    enabled: bool = Field(
        default=True,
        description="watch the live releases (a static-site or http-handler target's default)",
    )
    interval_seconds: float = Field(default=30, gt=0, description="time between two rounds")
    window_seconds: float = Field(
        default=120, gt=0, description="the recent traffic each round judges (the window)"
    )
    baseline_minutes: float = Field(
        default=60,
        gt=0,
        description="history before the window, since the promotion, that the window is "
        "compared with (the baseline)",
    )
    on_anomaly: Literal["alert", "rollback"] = Field(
        default="alert",
        description="an anomaly opens an incident; 'rollback' also withdraws the live release "
        "and puts back the one it replaced",
    )
    min_requests: int = Field(
        default=50, ge=1, description="window requests a verdict of health needs"
    )
    max_error_rate_increase: float = Field(
        default=0.01, ge=0, le=1, description="window minus baseline 5xx rate that is an anomaly"
    )
    max_p95_ratio: float = Field(
        default=1.5, ge=1, description="window p95 latency over the baseline's that is an anomaly"
    )
    confidence: float = Field(
        default=0.99,
        ge=0.5,
        le=0.9999,
        description="how sure each rule must be (every round is a test: keep it high)",
    )
    probe_failures: int = Field(
        default=3, ge=1, description="consecutive failures of a probe that are an anomaly"
    )

    @model_validator(mode="after")
    def _windows_fit(self) -> MonitorSettings:
        if self.window_seconds < self.interval_seconds:
            raise ValueError(
                f"window_seconds ({self.window_seconds:g}) must be at least interval_seconds "
                f"({self.interval_seconds:g}), or rounds would skip traffic"
            )
        if self.baseline_minutes * 60 < self.window_seconds:
            raise ValueError(
                f"baseline_minutes ({self.baseline_minutes:g}) must cover at least the window "
                f"({self.window_seconds:g} s): a baseline shorter than the window is noise"
            )
        return self


class TargetSettings(Section):
    kind: Literal["static-site", "http-handler", "git", "repo"] = Field(
        default="static-site",
        description="static-site, http-handler or git; 'repo' targets are made by Shipyard, "
        "one per [repos.NAME], named repo:NAME",
    )
    keep_versions: int = Field(default=20, ge=2, description="site versions kept for rollback")
    environment: str = Field(
        default="production", description="the environment it serves (policies read it)"
    )
    risk: Literal["low", "medium", "high"] = Field(
        default="low", description="how much harm a bad release here does (raises the gate's risk)"
    )
    rollout: RolloutSettings | None = Field(
        default=None, description="canary stages and health rules (absent: switch at once)"
    )
    monitor: MonitorSettings | None = Field(
        default=None,
        description="watching the live releases after promotion (absent: the defaults)",
    )
    mount: str = Field(
        default="/api", description="http-handler: URL prefix its handlers are served under"
    )
    repository: str = Field(default="", description="git: the repository, relative to this file")
    branch: str = Field(default="main", description="git: the branch a promotion merges into")
    merge: Literal["fast-forward", "merge-commit"] = Field(
        default="fast-forward", description="git: how a promotion merges"
    )

    @model_validator(mode="after")
    def _fits_kind(self) -> TargetSettings:
        if self.kind in ("git", "repo"):
            if not self.repository:
                raise ValueError('a git target needs repository = "PATH" (a bare repository)')
            if self.rollout is not None:
                raise ValueError(
                    "a git target has no traffic to shift: remove its rollout table "
                    "(a git release is a branch, then a merge)"
                )
            if self.monitor is not None and self.monitor.enabled:
                raise ValueError(
                    "a git target serves no traffic to watch: remove its monitor table"
                )
        mount = re.fullmatch(r"(/[a-z0-9][a-z0-9._-]*)+", self.mount)
        if self.kind == "http-handler" and not mount:
            raise ValueError(
                f'mount {self.mount!r} must be a URL prefix like "/api" '
                "(lowercase letters, digits, '.', '_' and '-' between slashes)"
            )
        return self

    def watching(self) -> MonitorSettings | None:
        """How its live releases are watched; None when they are not (a git target serves no
        traffic, or the monitor table says ``enabled = false``)."""
        if self.kind in ("git", "repo"):
            return None
        monitor = self.monitor or MonitorSettings()
        return monitor if monitor.enabled else None


class PolicySettings(Section):
    """``[policy]``: the Cedar policies and the approval rules around them."""

    files: list[str] = Field(
        default_factory=list,
        description=".cedar files relative to shipyard.toml (none: Shipyard's built-in policy)",
    )
    large_diff_lines: int = Field(
        default=400, ge=0, description="a change larger than this raises the gate's risk a level"
    )
    escalate_after_minutes: float = Field(
        default=0, ge=0, description="an approval waiting longer is escalated (0: never)"
    )
    escalate_to: list[str] = Field(
        default_factory=list, description="who an overdue approval is escalated to"
    )


class ArtifactSettings(Section):
    """``[artifacts]``: where artifact files live, what provenance records, and how long
    unreleased versions stay."""

    backend: Literal["auto", "folder", "database"] = Field(
        default="auto",
        description="where artifact files live: 'folder', 'database' (Shipyard's database), "
        "or 'auto' (the database on PostgreSQL, the folder on SQLite or when folder is set)",
    )
    folder: str = Field(
        default="",
        description="the folder backend's folder, e.g. a shared mount, relative to "
        "shipyard.toml (default: artifacts in the state folder)",
    )
    record_inputs: bool = Field(
        default=True,
        description="put each task's inputs in its signed provenance (their digest always is)",
    )
    keep_days: int = Field(
        default=30,
        ge=0,
        description="`artifacts gc` may remove unreleased versions older than this",
    )

    @model_validator(mode="after")
    def _folder_for_folder_backend(self) -> ArtifactSettings:
        if self.folder and self.backend == "database":
            raise ValueError(
                "artifacts.folder is for the folder backend: remove it, or set "
                "artifacts.backend = 'folder' to keep the files there"
            )
        return self

    def backend_for(self, *, sqlite: bool) -> Literal["folder", "database"]:
        """The backend ``auto`` stands for: an explicit folder, else the database on PostgreSQL
        (workers on other machines can reach it) and the folder on SQLite."""
        if self.backend != "auto":
            return self.backend
        return "folder" if self.folder or sqlite else "database"


class NamespaceSettings(Section):
    ttl_days: float | None = Field(
        default=None, ge=0, description="items expire after this (0: never; unset: memory.ttl_days)"
    )


class MemorySettings(Section):
    """``[memory]``: the embedder and how recall weighs, cuts and forgets."""

    embedder: Literal["hash", "minilm", "openai"] = Field(
        default="hash", description="'hash' (built in), 'minilm' (extra) or 'openai'"
    )
    model: str = Field(default="", description="the openai embedder's model")
    base_url: str = Field(default="", description="the openai embedder's server")
    api_key_env: str = Field(default="", description="the openai embedder's key variable")
    dim: int = Field(default=0, ge=0, description="vector size (0: the embedder's own)")
    threshold: float = Field(
        default=0.3, ge=-1, le=1, description="minimum similarity: below it nothing is recalled"
    )
    half_life_days: float = Field(default=30, ge=0, description="freshness: scores halve so often")
    ttl_days: float = Field(default=0, ge=0, description="default time-to-live (0: forever)")
    max_context_tokens: int = Field(default=1500, ge=0, description="cap on recalled context")
    recall_items: int = Field(default=5, ge=0, le=50, description="semantic items per prompt")
    hnsw_threshold: int = Field(
        default=250_000,
        ge=1,
        description="vectors per namespace before an HNSW graph replaces exact search",
    )
    namespaces: dict[str, NamespaceSettings] = Field(default_factory=dict)


class ObserveSettings(Section):
    """``[observe]``: traces and the operating figures."""

    tracing: bool = Field(default=True, description="record spans of every task")
    record_content: bool = Field(
        default=True, description="keep prompts and replies (redacted) as span events"
    )
    retention_days: int = Field(
        default=30,
        ge=1,
        description="spans and delivered notifications older than this are removed by "
        "`shipyard gc`",
    )
    sla_minutes: dict[str, float] = Field(
        default_factory=dict, description="per job kind: submit-to-end target for SLA adherence"
    )


class PersonSettings(Section):
    """``[people.NAME]``: a person, their Cedar roles, and the logins that are them."""

    roles: list[str] = Field(default_factory=list, description='Cedar roles (Role::"NAME")')
    os_users: list[str] = Field(
        default_factory=list,
        description="login names that are this person at the command line (one person each)",
    )

    @field_validator("os_users")
    @classmethod
    def _logins(cls, value: list[str]) -> list[str]:
        for login in value:
            if not login.strip() or login != login.strip():
                raise ValueError(
                    f"os_users entry {login!r} is not a login name (no blanks around it)"
                )
        if len(set(value)) != len(value):
            raise ValueError("os_users lists a login twice")
        return value


class SandboxSettings(Section):
    backend: Literal["auto", "bwrap", "process"] = Field(
        default="auto", description="'auto' is bwrap wherever bubblewrap works"
    )
    process_max_risk: Literal["low", "medium", "high"] = Field(
        default="low", description="highest job kind risk the unisolated backend may check"
    )
    timeout_seconds: float = Field(default=60.0, gt=0)
    cpu_seconds: int = Field(default=60, ge=1)
    memory_mb: int = Field(default=2048, ge=64)
    max_processes: int = Field(default=256, ge=1)
    max_output_bytes: int = Field(default=1_000_000, ge=1024)


class WorkerSettings(Section):
    """``[workers]``: liveness of worker processes, and how they stop."""

    heartbeat_seconds: float = Field(
        default=2.0, ge=0.1, le=60, description="how often each worker says it is alive"
    )
    recovery_seconds: float = Field(
        default=30.0,
        ge=1,
        description="a worker silent this long is taken for dead: a live one takes its tasks",
    )
    drain_seconds: float = Field(
        default=60.0,
        ge=0,
        description="on SIGTERM, how long the steps under way get to finish before exit",
    )

    @model_validator(mode="after")
    def _beats_within_recovery(self) -> WorkerSettings:
        if self.heartbeat_seconds * 3 > self.recovery_seconds:
            raise ValueError(
                f"heartbeat_seconds ({self.heartbeat_seconds}) must be at most a third of "
                f"recovery_seconds ({self.recovery_seconds}), or a slow beat looks like a death"
            )
        return self


class ServeSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535, description="the gateway: site, handlers")
    target: str = Field(default="", description="the static-site target to serve at /")
    api_requests_per_minute: int = Field(
        default=600, ge=1, description="REST API requests per minute per token"
    )
    admin_host: str = Field(default="", description="where the API and console listen ('': host)")
    admin_port: int = Field(
        default=8001, ge=0, le=65535, description="the API and console: an origin of their own"
    )
    max_body_bytes: int = Field(default=4 << 20, ge=1024, description="largest request body")
    max_json_depth: int = Field(default=32, ge=2, le=200, description="deepest JSON nesting")
    max_json_string: int = Field(
        default=1 << 20, ge=64, description="longest JSON string (characters) in a request"
    )
    failed_auth_per_minute: int = Field(
        default=20, ge=1, description="failed sign-ins and bad tokens per client address"
    )
    anonymous_requests_per_minute: int = Field(
        default=300, ge=1, description="requests without a token or session per client address"
    )
    figures_cache_seconds: float = Field(
        default=30.0, ge=0, description="how long computed figures are served again"
    )
    figures_per_minute: int = Field(
        default=6, ge=1, description="figures computed (not cached) per minute per token"
    )

    @model_validator(mode="after")
    def _apart(self) -> ServeSettings:
        if self.admin_port == self.port and self.port != 0:
            raise ValueError(
                "serve.admin_port must differ from serve.port: the API and console need an "
                "origin of their own, apart from the site and handlers"
            )
        return self


NOTIFY_EVENT_TYPES = (
    "dev.shipyard.approval.needed",
    "dev.shipyard.approval.escalated",
    "dev.shipyard.release.rolled_back",
    "dev.shipyard.incident.opened",
    "dev.shipyard.budget.paused",
)
"""The CloudEvents types Shipyard sends to ``[notify.NAME]`` endpoints."""

_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class NotifySettings(Section):
    """One ``[notify.NAME]`` table: a webhook endpoint that receives CloudEvents, signed."""

    url: str = Field(description="where events are POSTed: an http:// or https:// URL")
    secret_env: str = Field(
        description="the variable holding the endpoint's signing secret (whsec_ and base64), "
        "read from the environment or generate.secrets_file (secrets never live in this file)"
    )
    events: list[str] = Field(
        default_factory=lambda: list(NOTIFY_EVENT_TYPES),
        min_length=1,
        description="the event types this endpoint receives (default: all of them)",
    )
    timeout_seconds: float = Field(
        default=15.0, gt=0, le=300, description="to connect, and for each read of the answer"
    )
    max_attempts: int = Field(
        default=8, ge=1, le=100, description="attempts before a delivery is dead (the first too)"
    )
    backoff_seconds: float = Field(
        default=5.0, gt=0, description="the wait after the first failed attempt"
    )
    backoff_multiplier: float = Field(
        default=4.0, ge=1, description="each later wait is this many times the one before"
    )
    backoff_max_seconds: float = Field(
        default=21600.0, gt=0, description="no wait is longer (a Retry-After neither)"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "the endpoint's url must be http://HOST/... or https://HOST/... "
                '(e.g. "https://hooks.example.com/shipyard")'
            )
        if parts.username or parts.password:
            raise ValueError(
                "put no credentials in the url: deliveries are signed with the secret "
                "named by secret_env"
            )
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: str) -> str:
        if not _VARIABLE.match(value):
            raise ValueError(
                'secret_env names an environment variable (e.g. "SHIPYARD_WEBHOOK_SECRET"), '
                "not the secret itself"
            )
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in NOTIFY_EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"unknown event type(s) {', '.join(map(repr, unknown))}; "
                f"the types are: {', '.join(NOTIFY_EVENT_TYPES)}"
            )
        return list(dict.fromkeys(value))


_AUTHOR = re.compile(r"^[^<>\n]+ <[^<>\s@]+@[^<>\s]+>$")
_DOMAIN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def _argv(value: list[str], what: str) -> list[str]:
    if not value or any(not isinstance(arg, str) or not arg for arg in value):
        raise ValueError(f"{what} is an argv: a non-empty list of non-empty strings")
    return value


_SCP = re.compile(r"^[\w.+-]+@[\w.-]+:(?!//)")


def is_remote_path(path: str) -> bool:
    """True when a repository's ``path`` is a URL rather than a folder."""
    return "://" in path or bool(_SCP.match(path))


class RepoSettings(Section):
    """One ``[repos.NAME]`` table: an existing git repository whose changes are tasks.

    Only the shape is checked here; that ``path`` is a git repository and ``base`` one of
    its commits is checked when Shipyard starts (:func:`shipyard.repos.check_repo`).
    """

    path: str = Field(
        description="the repository: a local git repository (relative to shipyard.toml) or a "
        "remote URL (mirrored in the state folder and fetched before each task)"
    )
    base: str = Field(
        default="main", description="the branch (or tag, or commit) changes start from"
    )
    setup: list[list[str]] = Field(
        default_factory=list,
        description='commands that build the environment the tests run in, e.g. ["pip", '
        '"install", "-e", ".[test]"] or [["uv", "sync"]]; run in a fresh virtual environment, '
        "once per set of dependency files, and cached (none: Shipyard's own interpreter)",
    )
    test: list[str] = Field(
        default_factory=lambda: ["python", "-m", "pytest"],
        description="argv that runs the repository's tests (default: python -m pytest, with "
        "the environment's interpreter, else Shipyard's)",
    )
    lint: list[str] | None = Field(
        default=None, description='argv of the repository\'s linter, e.g. ["ruff", "check"]'
    )
    typecheck: list[str] | None = Field(
        default=None, description='argv of its type checker, e.g. ["mypy", "src"]'
    )
    domain: str = Field(default="code", description="the domain its changes are tasks of")
    tier: str = Field(
        default="",
        description="the tier that writes its changes (a [tiers] name, 'auto' or 'human'; "
        "empty: generate.tier); `shipyard change --tier` overrides it per change",
    )
    max_attempts: int = Field(
        default=3, ge=1, le=10, description="attempts (the first and its repairs) per change"
    )
    merge_to: str | None = Field(
        default=None,
        description="a branch an approved change is merged into (absent: the change stays on "
        "its own branch)",
    )
    merge: Literal["fast-forward", "merge-commit"] = Field(
        default="fast-forward", description="how a change is merged into merge_to"
    )
    max_context_tokens: int = Field(
        default=12000,
        ge=500,
        description="what a model is sent about the repository: its map and the files most "
        "relevant to the goal, estimated at 4 characters a token",
    )
    author: str = Field(
        default="Shipyard <shipyard@localhost>",
        description='"Name <email>" of the commits a change is released as',
    )
    index_url: str = Field(
        default="",
        description="the package index setup and the import guard use (default: the index "
        "pip is configured with, else https://pypi.org/simple)",
    )
    max_file_bytes: int = Field(
        default=1_000_000, ge=1024, description="largest file a change may add or rewrite"
    )
    max_change_bytes: int = Field(
        default=20_000_000, ge=1024, description="most bytes of files a change may touch"
    )

    @field_validator("setup", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        if isinstance(value, list) and value and all(isinstance(arg, str) for arg in value):
            return [value]  # one argv
        return value

    @field_validator("setup")
    @classmethod
    def _setup(cls, value: list[list[str]]) -> list[list[str]]:
        for argv in value:
            _argv(argv, "each setup command")
        return value

    @field_validator("test", "lint", "typecheck")
    @classmethod
    def _command(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _argv(value, "the command")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("path names the repository: a folder or a URL")
        return value

    @property
    def remote(self) -> bool:
        """True when ``path`` is a URL (``https://``, ``ssh://``, ``file://``,
        ``git@host:...``): the repository is mirrored, and a released change is pushed."""
        return is_remote_path(self.path)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not _DOMAIN.match(value):
            raise ValueError(
                "a domain is lowercase letters, digits and '-', starting with a letter"
            )
        return value

    @field_validator("author")
    @classmethod
    def _author(cls, value: str) -> str:
        if not _AUTHOR.match(value):
            raise ValueError('author is "Name <email>", e.g. "Shipyard <shipyard@example.com>"')
        return value

    @field_validator("index_url")
    @classmethod
    def _index(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(
                'index_url is an http:// or https:// address, e.g. "https://pypi.org/simple"'
            )
        return value.rstrip("/")
