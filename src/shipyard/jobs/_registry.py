"""The project's job kinds, loaded from the folders (or entry points) each domain lists."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

from shipyard.config import Project
from shipyard.errors import ConfigError, NotFound
from shipyard.jobs._kind import JobKind, load_job_kind
from shipyard.jobs._repo_change import repo_change_kind

__all__ = ["ENTRY_POINT_GROUP", "JobRegistry"]

ENTRY_POINT_GROUP = "shipyard.jobs"
"""Packages ship job kinds as entry points naming a function that returns the kind's folder."""


def _resolve(project: Project, ref: str) -> Path:
    if ref.startswith("entry:"):
        name = ref.removeprefix("entry:")
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            raise ConfigError(
                f"{project.config_path}: job kind {ref!r}: no installed package provides it",
                hint=f"install the package that registers {name!r} in [{ENTRY_POINT_GROUP}]",
            )
        return Path(found[0].load()())
    return (project.root / ref).resolve()


class JobRegistry:
    """Every job kind of the project, by name."""

    def __init__(self, kinds: dict[str, JobKind]) -> None:
        self._kinds = dict(kinds)

    @classmethod
    def load(cls, project: Project) -> JobRegistry:
        kinds: dict[str, JobKind] = {}
        for domain, settings in project.settings.domains.items():
            for ref in settings.jobs:
                kind = load_job_kind(_resolve(project, ref), domain=domain)
                if kind.name in kinds:
                    raise ConfigError(
                        f"{project.config_path}: job kind {kind.name!r} is declared twice "
                        f"(domains {kinds[kind.name].domain!r} and {domain!r})",
                        hint="each job kind belongs to exactly one domain",
                    )
                if kind.release and kind.release.target not in project.settings.targets:
                    raise ConfigError(
                        f"{kind.folder / 'job.toml'}: key 'release.target': no target named "
                        f"{kind.release.target!r} in {project.config_path}",
                        hint=f"declared targets: {', '.join(project.settings.targets) or 'none'}",
                    )
                tiers = {*project.settings.tiers, "auto", "human"}
                if kind.tier and kind.tier not in tiers:
                    raise ConfigError(
                        f"{kind.folder / 'job.toml'}: key 'tier': no tier named {kind.tier!r} "
                        f"in {project.config_path}",
                        hint=f"use one of: {', '.join(sorted(tiers))}, or declare "
                        f"[tiers.{kind.tier}]",
                    )
                kinds[kind.name] = kind
        for name, repo in project.settings.repos.items():  # built in: one per repository
            kind = repo_change_kind(name, repo, root=project.root, state_dir=project.state_dir)
            kinds[kind.name] = kind
        return cls(kinds)

    def get(self, name: str) -> JobKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise NotFound(
                f"no job kind named {name!r}",
                hint=f"known job kinds: {', '.join(sorted(self._kinds)) or '(none)'}",
            ) from None

    def __iter__(self) -> Iterator[JobKind]:
        return iter(self._kinds.values())

    def names(self) -> list[str]:
        return sorted(self._kinds)
