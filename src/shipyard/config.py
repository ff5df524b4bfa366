"""``shipyard.toml`` + environment -> typed settings.

A project is a folder holding ``shipyard.toml``; Shipyard keeps its state (database, artifact
store, published sites) in ``.shipyard/`` beside it. ``SHIPYARD_DATABASE_URL`` points the
store at PostgreSQL instead of the embedded SQLite file.

Every mistake in the file fails with one message naming the file, the key and what is
allowed, before anything runs. The models of the single tables live in
``shipyard._config_sections``; this module puts them together, checks the rules that span
tables, and loads the project.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from shipyard._config_sections import (
    NOTIFY_EVENT_TYPES,
    RESERVED_TIERS,
    TIER_KEYS,
    ArtifactSettings,
    BudgetSettings,
    DomainSettings,
    MemorySettings,
    MonitorSettings,
    NotifySettings,
    ObserveSettings,
    PersonSettings,
    PolicySettings,
    PriceSettings,
    ProjectSettings,
    RepoSettings,
    RolloutSettings,
    RouterSettings,
    SandboxSettings,
    Section,
    ServeSettings,
    TargetSettings,
    TierSettings,
    WorkerSettings,
)
from shipyard.errors import ConfigError

__all__ = [
    "CONFIG_FILE",
    "NOTIFY_EVENT_TYPES",
    "ArtifactSettings",
    "BudgetSettings",
    "DomainSettings",
    "MemorySettings",
    "MonitorSettings",
    "NotifySettings",
    "ObserveSettings",
    "PersonSettings",
    "PolicySettings",
    "PriceSettings",
    "Project",
    "ProjectSettings",
    "RepoSettings",
    "RolloutSettings",
    "RouterSettings",
    "SandboxSettings",
    "ServeSettings",
    "Settings",
    "TargetSettings",
    "TierSettings",
    "find_project",
    "load_project",
    "load_settings",
]

CONFIG_FILE = "shipyard.toml"
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


class Settings(Section):
    """The whole of ``shipyard.toml``."""

    project: ProjectSettings = ProjectSettings()
    generate: RouterSettings = RouterSettings()
    tiers: dict[str, TierSettings] = Field(default_factory=dict, validate_default=True)
    budgets: BudgetSettings = BudgetSettings()
    policy: PolicySettings = PolicySettings()
    artifacts: ArtifactSettings = ArtifactSettings()
    memory: MemorySettings = MemorySettings()
    observe: ObserveSettings = ObserveSettings()
    people: dict[str, PersonSettings] = Field(default_factory=dict)
    domains: dict[str, DomainSettings] = Field(default_factory=dict)
    targets: dict[str, TargetSettings] = Field(default_factory=dict)
    sandbox: SandboxSettings = SandboxSettings()
    serve: ServeSettings = ServeSettings()
    workers: WorkerSettings = WorkerSettings()
    prices: dict[str, PriceSettings] = Field(
        default_factory=dict, description="per-model prices that override genai-prices"
    )
    notify: dict[str, NotifySettings] = Field(
        default_factory=dict, description="webhook endpoints that receive CloudEvents"
    )
    repos: dict[str, RepoSettings] = Field(
        default_factory=dict, description="git repositories whose changes are tasks"
    )

    @field_validator("domains", "targets", "tiers", "notify", "repos")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(
                    f"name {name!r} must be lowercase letters, digits and '-', "
                    "starting with a letter"
                )
        return value

    @field_validator("tiers")
    @classmethod
    def _tier_names(cls, value: dict[str, TierSettings]) -> dict[str, TierSettings]:
        for name in value:
            if name in RESERVED_TIERS:
                raise ValueError(f"{name!r} is reserved (auto: the router picks; human: a person)")
        return {"template": TierSettings(), **value}

    @model_validator(mode="after")
    def _routes(self) -> Settings:
        known = set(self.tiers)
        for name in self.generate.chain:
            if name not in known:
                raise ValueError(
                    f"generate.chain names tier {name!r}, which no [tiers.{name}] declares"
                )
        if self.generate.tier not in known | RESERVED_TIERS:
            raise ValueError(
                f"generate.tier is {self.generate.tier!r}; declare [tiers.{self.generate.tier}] "
                f"or use one of: {', '.join(sorted(known | RESERVED_TIERS))}"
            )
        return self

    @model_validator(mode="after")
    def _memory_namespaces(self) -> Settings:
        known = {*self.domains, "global"}
        for name, domain in self.domains.items():
            for other in domain.memory_reads:
                if other not in known:
                    raise ValueError(
                        f"domains.{name}.memory_reads names {other!r}, which is not a domain"
                    )
        for name in self.memory.namespaces:
            if name not in known:
                raise ValueError(
                    f"memory.namespaces.{name}: namespaces are the domains' and 'global'"
                )
        return self

    @model_validator(mode="after")
    def _repo_targets(self) -> Settings:
        """Each repository is released to a target of its own, ``repo:NAME`` (a name no
        [targets] table can take), so policies, releases and rollbacks treat it like any."""
        for name, repo in self.repos.items():
            if len(name) > 50:
                raise ValueError(f"repos.{name}: a repository's name has at most 50 characters")
            if self.tiers and repo.tier and repo.tier not in {*self.tiers, *RESERVED_TIERS}:
                raise ValueError(
                    f"repos.{name}.tier names {repo.tier!r}, which no [tiers] declares"
                )
            # Its domain has a queue, a budget and memory like any: declared, or with defaults.
            self.domains.setdefault(repo.domain, DomainSettings(jobs=[]))
            self.targets[f"repo:{name}"] = TargetSettings(
                kind="repo",
                repository=repo.path,
                branch=repo.merge_to or "",
                merge=repo.merge,
                environment="repository",
                risk="medium",
            )
        return self

    @model_validator(mode="after")
    def _one_person_per_login(self) -> Settings:
        owners: dict[str, str] = {}
        for name, person in self.people.items():
            for login in person.os_users:
                if login in owners:
                    raise ValueError(
                        f"login {login!r} is in the os_users of both [people.{owners[login]}] "
                        f"and [people.{name}]: a login is one person; keep it in one of them"
                    )
                owners[login] = name
        return self

    @property
    def chain(self) -> list[str]:
        """Tiers cheapest first: the configured chain, else template then [tiers] in order."""
        return list(self.generate.chain) or list(self.tiers)


@dataclass(frozen=True, kw_only=True)
class Project:
    """A loaded project: where it lives and what it says."""

    root: Path
    """The folder holding shipyard.toml."""
    settings: Settings
    """The parsed file."""
    database_url: str
    """SQLAlchemy URL of Shipyard's records (SQLite file by default)."""

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def state_dir(self) -> Path:
        return (self.root / self.settings.project.state_dir).resolve()

    @property
    def artifacts_dir(self) -> Path:
        """The folder backend's store: ``[artifacts] folder``, else ``artifacts`` in the state
        folder."""
        folder = self.settings.artifacts.folder
        if folder:
            return (self.root / Path(folder).expanduser()).resolve()
        return self.state_dir / "artifacts"

    @property
    def artifact_backend(self) -> Literal["folder", "database"]:
        """Where artifact files live, ``[artifacts] backend = "auto"`` resolved."""
        return self.settings.artifacts.backend_for(sqlite=self.is_sqlite)

    @property
    def keys_dir(self) -> Path:
        """The signing key pair: in the state folder, outside the artifact store."""
        return self.state_dir / "keys"

    @property
    def sites_dir(self) -> Path:
        return self.state_dir / "sites"

    @property
    def policy_files(self) -> list[Path]:
        return [(self.root / name).resolve() for name in self.settings.policy.files]

    @property
    def secrets_file(self) -> Path | None:
        name = self.settings.generate.secrets_file
        return (self.root / name).resolve() if name else None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def system_database_url(self) -> str:
        """Where DBOS keeps workflow checkpoints: a sibling SQLite file, or the same PostgreSQL."""
        if self.is_sqlite:
            return f"sqlite:///{self.state_dir / 'workflows.sqlite'}"
        return self.database_url


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key {key!r}"
    if kind == "missing":
        return f"missing key {key!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:
        return message  # a rule across sections: the message names its keys
    return f"key {key!r}: {message} (got {error.get('input')!r})"


def load_settings(path: Path) -> Settings:
    """Parse and validate one shipyard.toml; raise ConfigError naming file, key and fix."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path}: no such file", hint="run `shipyard init` to create one"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", hint="fix the syntax") from exc
    moved = sorted(TIER_KEYS & set(raw.get("generate") or {}))
    if moved:
        raise ConfigError(
            f"{path}: key 'generate.{moved[0]}': models are declared as tiers now",
            hint="move provider/model/base_url/... to a [tiers.NAME] table (e.g. [tiers.local]) "
            "and set generate.tier = NAME; see docs/providers.md",
        )
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(dict(e)) for e in exc.errors()]
        allowed = _allowed_keys(exc.errors()[0]["loc"])
        raise ConfigError(
            f"{path}: " + "; ".join(problems),
            hint=f"allowed keys there: {', '.join(allowed)}" if allowed else "see docs/config",
            details={"file": str(path), "problems": problems},
        ) from exc


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] | None = Settings
    parts = list(loc[:-1])
    while parts and model is not None:
        field = model.model_fields.get(str(parts.pop(0)))
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        if getattr(annotation, "__origin__", None) is dict and args:
            annotation = args[-1]  # [domains.NAME]: the next part is the name, not a field
            if parts:
                parts.pop(0)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            model = None
    return sorted(model.model_fields) if model is not None else []


def find_project(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (or $SHIPYARD_PROJECT) holding shipyard.toml."""
    explicit = os.environ.get("SHIPYARD_PROJECT")
    here = Path(explicit) if explicit else (start or Path.cwd())
    here = here.resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise ConfigError(
        f"no {CONFIG_FILE} in {here} or any folder above it",
        hint="run `shipyard init` in your project folder, or pass --project DIR",
    )


def load_project(root: Path | None = None) -> Project:
    """Load the project at ``root`` (or the one found from the current folder)."""
    folder = root.resolve() if root is not None else find_project()
    settings = load_settings(folder / CONFIG_FILE)
    url = os.environ.get("SHIPYARD_DATABASE_URL", "").strip()
    if not url:
        url = f"sqlite:///{(folder / settings.project.state_dir / 'shipyard.db').resolve()}"
    elif not (url.startswith("sqlite") or url.startswith("postgresql")):
        raise ConfigError(
            f"SHIPYARD_DATABASE_URL={url!r} is neither sqlite:/// nor postgresql://",
            hint="use e.g. postgresql://user@127.0.0.1:5432/shipyard",
        )
    if (serve_target := settings.serve.target) and serve_target not in settings.targets:
        raise ConfigError(
            f"{folder / CONFIG_FILE}: key 'serve.target': no target named {serve_target!r}",
            hint=f"declared targets: {', '.join(settings.targets) or '(none)'}",
        )
    return Project(root=folder, settings=settings, database_url=url)
