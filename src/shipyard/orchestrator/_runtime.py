"""The runtime: one project's stages, composed and ready to run tasks.

Built once per process (worker, CLI command, test) from the project's settings; the durable
workflow reads the runtime installed in its process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import entry_points

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from shipyard.artifacts import ArtifactBackend, ArtifactStore, DatabaseArtifactStore, SigningKey
from shipyard.checks import BUILTIN_CHECKS, Check
from shipyard.config import Project
from shipyard.errors import ConfigError, SandboxError, StateError
from shipyard.generate import (
    CommandProvider,
    Provider,
    ReplayProvider,
    Router,
    first_of,
    load_provider,
    read_secrets,
    recorded_replies,
)
from shipyard.jobs import JobKind, JobRegistry
from shipyard.memory import SemanticMemory, load_embedder
from shipyard.model import Risk
from shipyard.observe import Tracing
from shipyard.orchestrator._leases import BudgetLeases
from shipyard.orchestrator._ledger import replay_lookup
from shipyard.policy import Policies
from shipyard.release import GitTarget, HttpHandler, RepoChangeTarget, StaticSite, Target
from shipyard.repos import git_env, open_repo
from shipyard.sandbox import Limits, SandboxBackend, get_backend
from shipyard.store import make_engine, migrate, schema_status, session_factory
from shipyard.tools import GitPushTool, HttpTool, PublishTool, Tool

__all__ = ["TOOLS_ENTRY_POINTS", "Runtime", "current_runtime", "install_runtime"]

TOOLS_ENTRY_POINTS = "shipyard.tools"
"""Packages add tools as entry points naming a factory that returns a Tool."""


@dataclass(kw_only=True)
class Runtime:
    """Everything a task needs, built from one project."""

    project: Project
    """The loaded project."""
    engine: Engine
    """Engine of Shipyard's records."""
    jobs: JobRegistry
    """The project's job kinds."""
    checks: Mapping[str, Check]
    """Check plugins by name."""
    policies: Policies
    """The project's Cedar policies, validated against Shipyard's schema."""
    provider_overrides: Mapping[str, Provider] = field(default_factory=dict)
    """Providers chosen by the caller for some tiers instead of the configured ones."""
    sandbox_override: SandboxBackend | None = None
    """A backend chosen by the caller instead of the configured one (tests, benchmarks)."""
    migrated: tuple[str | None, str | None] | None = None
    """(from, to) schema revisions when opening this runtime migrated the database."""
    _providers: dict[str, Provider] = field(default_factory=dict, init=False, repr=False)
    _providers_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._providers.update(self.provider_overrides)

    @classmethod
    def open(
        cls,
        project: Project,
        *,
        provider: Provider | None = None,
        providers: Mapping[str, Provider] | None = None,
        checks: Mapping[str, Check] | None = None,
        upgrade_schema: bool = True,
    ) -> Runtime:
        """Build the runtime; migrates the schema unless told not to, then checks its version.

        ``provider`` replaces the default tier's provider (``generate.tier``, or ``template``
        when that is ``auto`` or ``human``); ``providers`` replaces named tiers' providers.
        """
        jobs = JobRegistry.load(project)
        registry = dict(checks or BUILTIN_CHECKS)
        for kind in jobs:
            for spec in kind.checks:
                if spec.name not in registry:
                    raise ConfigError(
                        f"{kind.folder / 'job.toml'}: unknown check {spec.name!r}",
                        hint=f"known checks: {', '.join(sorted(registry))}",
                    )
        policies = Policies.load(project.policy_files)  # refuses to start on a bad policy
        engine = make_engine(project.database_url)
        try:
            migrated = migrate(engine) if upgrade_schema else None
            current, head = schema_status(engine)
        except BaseException:
            engine.dispose()
            raise
        if current != head:
            engine.dispose()
            raise StateError(
                f"the database schema is at revision {current}, this Shipyard expects {head}",
                hint="run `shipyard init` to migrate, or upgrade Shipyard if the database is newer",
            )
        overrides = dict(providers or {})
        if provider is not None:
            default = project.settings.generate.tier
            overrides[default if default in project.settings.tiers else "template"] = provider
        runtime = cls(
            project=project,
            engine=engine,
            jobs=jobs,
            checks=registry,
            policies=policies,
            provider_overrides=overrides,
            migrated=migrated,
        )
        for kind in jobs:
            for number, effect in enumerate(kind.effects, start=1):
                if effect.tool not in runtime.tools:
                    engine.dispose()
                    raise ConfigError(
                        f"{kind.folder / 'job.toml'}: effect {number}: no tool named "
                        f"{effect.tool!r}",
                        hint=f"known tools: {', '.join(sorted(runtime.tools))}",
                    )
        return runtime

    @cached_property
    def router(self) -> Router:
        settings = self.project.settings
        return Router(
            settings.generate, chain=settings.chain, tiers=settings.tiers, prices=settings.prices
        )

    def provider(self, tier: str) -> Provider:
        """The provider serving ``tier``, built on first use (ConfigError if it cannot be)."""
        with self._providers_lock:
            found = self._providers.get(tier)
            if found is None:
                found = self._build_provider(tier)
                self._providers[tier] = found
            return found

    def _build_provider(self, tier: str) -> Provider:
        settings = self.project.settings.tiers.get(tier)
        if settings is None:
            raise ConfigError(
                f"{self.project.config_path}: no tier named {tier!r}",
                hint=f"declared tiers: {', '.join(self.project.settings.tiers)}",
            )
        if settings.provider == "replay":
            lookup = replay_lookup(self.sessions)
            if settings.recorded:  # replies shipped as files come first (an offline example)
                folder = self.project.root / settings.recorded
                lookup = first_of(recorded_replies(folder), lookup)
            return ReplayProvider(lookup)
        if settings.provider == "command":  # a coding agent, run in this runtime's sandbox
            try:
                return CommandProvider(
                    settings,
                    backend=self.sandbox,
                    limits=self.limits,
                    secrets=self.secrets,
                    root=self.project.root,
                )
            except ConfigError as exc:
                raise ConfigError(
                    f"{self.project.config_path}: tier {tier!r}: {exc.message}", hint=exc.hint
                ) from exc
        return load_provider(settings, tier=tier, secrets=self.secrets)

    @cached_property
    def secrets(self) -> dict[str, str]:
        return read_secrets(self.project.secrets_file)

    def check_tiers(self) -> None:
        """Build every tier's provider now: a worker refuses to start on a tier it cannot use."""
        for tier in self.project.settings.tiers:
            self.provider(tier)

    @cached_property
    def sandbox(self) -> SandboxBackend:
        """Where checks run; started on first use (a warm pool is not free)."""
        return self.sandbox_override or get_backend(self.project.settings.sandbox.backend)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @cached_property
    def budget_leases(self) -> BudgetLeases | None:
        """This process's leases on the day budgets (None when ``budgets.lease_calls`` is 0:
        every call then holds against the day budgets under their shared lock)."""
        calls = self.project.settings.budgets.lease_calls
        if not calls:
            return None
        owner = f"{socket.gethostname()[:48]}-{os.getpid()}-{secrets.token_hex(4)}"
        return BudgetLeases(self.sessions, owner=owner, calls=calls)

    @cached_property
    def artifacts(self) -> ArtifactBackend:
        """Where artifact files live: ``[artifacts] backend`` (auto: the database on
        PostgreSQL, so every worker sharing it shares the store; a folder on SQLite)."""
        if self.project.artifact_backend == "database":
            return DatabaseArtifactStore(self.sessions)
        return ArtifactStore(self.project.artifacts_dir)

    @cached_property
    def limits(self) -> Limits:
        s = self.project.settings.sandbox
        return Limits(
            timeout_seconds=s.timeout_seconds,
            cpu_seconds=s.cpu_seconds,
            memory_mb=s.memory_mb,
            max_processes=s.max_processes,
            max_output_bytes=s.max_output_bytes,
        )

    def target(self, name: str) -> Target:
        settings = self.project.settings.targets.get(name)
        if settings is None:
            raise ConfigError(
                f"{self.project.config_path}: no target named {name!r}",
                hint=f"declared targets: {', '.join(self.project.settings.targets) or '(none)'}",
            )
        if settings.kind == "repo":
            return self._repo_target(name)
        root = self.project.sites_dir / name
        if settings.kind == "http-handler":
            return HttpHandler(name, root, mount=settings.mount)
        if settings.kind == "git":
            repository = self.project.root / settings.repository
            return GitTarget(name, repository, branch=settings.branch, merge=settings.merge)
        return StaticSite(name, root, keep_versions=settings.keep_versions)

    def _repo_target(self, name: str) -> Target:
        """``repo:NAME``: changes to ``[repos.NAME]``, released as branches of it (of its
        mirror, for a remote repository, which the ``git-push`` effect then pushes)."""
        repo = name.removeprefix("repo:")
        settings = self.project.settings.repos[repo]
        found = open_repo(
            repo,
            settings,
            root=self.project.root,
            state_dir=self.project.state_dir,
            fetch=False,
        )
        return RepoChangeTarget(
            name,
            found.git_dir,
            merge_to=settings.merge_to,
            merge=settings.merge,
            author=settings.author,
        )

    @cached_property
    def tracing(self) -> Tracing:
        """The project's tracer (spans to the database, and over OTLP when configured)."""
        settings = self.project.settings.observe
        return Tracing(
            self.sessions,
            project=self.project.settings.project.name,
            record_content=settings.record_content,
            enabled=settings.tracing,
        )

    @cached_property
    def memory(self) -> SemanticMemory:
        """Semantic memory with the configured embedder (loaded on first use)."""
        settings = self.project.settings
        return SemanticMemory(
            load_embedder(settings.memory, self.secrets),
            namespaces=[*settings.domains, "global"],
            ttl_days={
                name: ns.ttl_days
                for name, ns in settings.memory.namespaces.items()
                if ns.ttl_days is not None
            },
            default_ttl_days=settings.memory.ttl_days,
            hnsw_threshold=settings.memory.hnsw_threshold,
        )

    @cached_property
    def signing_key(self) -> SigningKey:
        """The project's ed25519 key pair (``shipyard init`` creates it; so does first use)."""
        return SigningKey.load_or_create(self.project.keys_dir)

    @cached_property
    def public_key(self) -> SigningKey:
        """The public half only: enough to verify."""
        return SigningKey.load(self.project.keys_dir, private=False)

    @cached_property
    def tools(self) -> dict[str, Tool]:
        """Tools by name: the built-ins, then any that packages register as entry points."""
        found: dict[str, Tool] = {
            "publish": PublishTool(
                self.target, lambda a: self.artifacts.read(self.artifacts.get(a))
            ),
            "http": HttpTool(),
            # A change to a remote repository is pushed with what fetching it uses (the
            # user's credential helpers, SSH agent), never prompting.
            "git-push": GitPushTool(
                env=git_env(remote=True) | {"GIT_SSH_COMMAND": "ssh -o BatchMode=yes"}
            ),
        }
        for ep in entry_points(group=TOOLS_ENTRY_POINTS):
            tool = ep.load()()
            if not isinstance(tool, Tool):
                raise ConfigError(
                    f"tool {ep.name!r} ({ep.value}) does not implement the Tool protocol",
                    hint="it needs name, capability, reversible, call() and compensate()",
                )
            found[ep.name] = tool
        return found

    def tool(self, name: str) -> Tool:
        try:
            return self.tools[name]
        except KeyError:
            raise ConfigError(
                f"no tool named {name!r}", hint=f"known tools: {', '.join(sorted(self.tools))}"
            ) from None

    def require_isolation_for(self, kind: JobKind) -> None:
        """Refuse to check a job kind on an unisolated sandbox above the configured risk."""
        if self.sandbox.isolated:
            return
        allowed = self.project.settings.sandbox.process_max_risk
        order = [Risk.LOW, Risk.MEDIUM, Risk.HIGH]
        if order.index(kind.risk) > order.index(Risk(allowed)):
            raise SandboxError(
                f"job kind {kind.name!r} is {kind.risk} risk; the unisolated "
                f"{self.sandbox.name!r} sandbox may check up to {allowed} risk",
                hint="install bubblewrap (sandbox.backend = 'auto'), or raise "
                "sandbox.process_max_risk in shipyard.toml if you accept the risk",
            )

    def close(self) -> None:
        leases = self.__dict__.get("budget_leases")
        if leases is not None:
            # Best effort: leases left behind lapse on their own within minutes.
            with contextlib.suppress(SQLAlchemyError):
                leases.release()
        if "tracing" in self.__dict__:
            self.tracing.shutdown()  # flushes what is still batched
        if "sandbox" in self.__dict__:
            self.sandbox.close()
        self.engine.dispose()


_installed: Runtime | None = None


def install_runtime(runtime: Runtime | None) -> None:
    """Make ``runtime`` the one this process's workflows use (None to uninstall)."""
    global _installed
    _installed = runtime


def current_runtime() -> Runtime:
    if _installed is None:
        raise StateError(
            "no Shipyard runtime is installed in this process",
            hint="workflows run inside `shipyard worker` (or a test's worker fixture)",
        )
    return _installed
