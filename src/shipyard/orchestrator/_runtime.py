"""The runtime: one project's stages, composed and ready to run tasks.

Built once per process (worker, CLI command, test) from the project's settings; the durable
workflow reads the runtime installed in its process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shipyard.artifacts import ArtifactStore
from shipyard.checks import BUILTIN_CHECKS, Check
from shipyard.config import Project
from shipyard.errors import ConfigError, SandboxError, StateError
from shipyard.generate import Provider, load_provider
from shipyard.jobs import JobKind, JobRegistry
from shipyard.model import Risk
from shipyard.release import StaticSite
from shipyard.sandbox import Limits, SandboxBackend, get_backend
from shipyard.store import make_engine, migrate, schema_status, session_factory

__all__ = ["Runtime", "current_runtime", "install_runtime"]


@dataclass(kw_only=True)
class Runtime:
    """Everything a task needs, built from one project."""

    project: Project
    """The loaded project."""
    engine: Engine
    """Engine of Shipyard's records."""
    jobs: JobRegistry
    """The project's job kinds."""
    provider: Provider
    """The generator for every job kind (the router arrives with model tiers)."""
    checks: Mapping[str, Check]
    """Check plugins by name."""
    sandbox_override: SandboxBackend | None = None
    """A backend chosen by the caller instead of the configured one (tests, benchmarks)."""

    @classmethod
    def open(
        cls,
        project: Project,
        *,
        provider: Provider | None = None,
        checks: Mapping[str, Check] | None = None,
        upgrade_schema: bool = True,
    ) -> Runtime:
        """Build the runtime; migrates the schema unless told not to, then checks its version."""
        jobs = JobRegistry.load(project)
        registry = dict(checks or BUILTIN_CHECKS)
        for kind in jobs:
            for spec in kind.checks:
                if spec.name not in registry:
                    raise ConfigError(
                        f"{kind.folder / 'job.toml'}: unknown check {spec.name!r}",
                        hint=f"known checks: {', '.join(sorted(registry))}",
                    )
        engine = make_engine(project.database_url)
        if upgrade_schema:
            migrate(engine)
        current, head = schema_status(engine)
        if current != head:
            raise StateError(
                f"the database schema is at revision {current}, this Shipyard expects {head}",
                hint="run `shipyard init` to migrate, or upgrade Shipyard if the database is newer",
            )
        return cls(
            project=project,
            engine=engine,
            jobs=jobs,
            provider=provider or load_provider(project.settings.generate),
            checks=registry,
        )

    @cached_property
    def sandbox(self) -> SandboxBackend:
        """Where checks run; started on first use (a warm pool is not free)."""
        return self.sandbox_override or get_backend(self.project.settings.sandbox.backend)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @cached_property
    def artifacts(self) -> ArtifactStore:
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

    def target(self, name: str) -> StaticSite:
        settings = self.project.settings.targets.get(name)
        if settings is None:
            raise ConfigError(
                f"{self.project.config_path}: no target named {name!r}",
                hint=f"declared targets: {', '.join(self.project.settings.targets) or '(none)'}",
            )
        return StaticSite(name, self.project.sites_dir / name, keep_versions=settings.keep_versions)

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
