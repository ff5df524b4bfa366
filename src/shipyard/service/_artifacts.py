"""Artifacts for people: lineage, diffs, verification, retention, OpenLineage events.

Thin commands and queries over ``shipyard.artifacts``: each opens the session and hands the
stage the project's artifact store and keys.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shipyard import artifacts
from shipyard.artifacts import ArtifactCheck, GcReport
from shipyard.orchestrator import Runtime
from shipyard.store import TaskRow, transaction

__all__ = [
    "collect_garbage",
    "diff_against_previous",
    "diff_artifacts",
    "find_artifact",
    "lineage",
    "openlineage_events",
    "produced_with",
    "verify_artifact",
]


def find_artifact(rt: Runtime, ref: str) -> str:
    """An artifact id from an id, a unique prefix, or a task id."""
    with rt.sessions() as session:
        return artifacts.find_artifact(session, ref)


def lineage(rt: Runtime, ref: str) -> dict[str, Any]:
    """The artifact's history back to its inputs and forward to its releases."""
    with rt.sessions() as session:
        return artifacts.lineage(session, ref)


def produced_with(
    rt: Runtime, *, prompt: str = "", model: str = "", template: str = ""
) -> list[dict[str, Any]]:
    """Tasks whose artifact was made with this prompt, model or template version."""
    with rt.sessions() as session:
        return artifacts.produced_with(session, prompt=prompt, model=model, template=template)


def openlineage_events(rt: Runtime, ref: str) -> list[dict[str, Any]]:
    """OpenLineage run events for every task behind an artifact."""
    with rt.sessions() as session:
        return artifacts.openlineage_events(session, ref, project=rt.project.settings.project.name)


def diff_artifacts(rt: Runtime, a: str, b: str, *, force: bool = False) -> list[str]:
    """Unified diff lines from version ``a`` to ``b``."""
    with rt.sessions() as session:
        return artifacts.diff_artifacts(session, rt.artifacts, a, b, force=force)


def diff_against_previous(rt: Runtime, task: TaskRow) -> tuple[str | None, list[str]]:
    """(the version a task's artifact is compared with, the diff lines)."""
    with rt.sessions() as session:
        return artifacts.diff_against_previous(session, rt.artifacts, task)


def verify_artifact(rt: Runtime, artifact_id: str) -> ArtifactCheck:
    """Files against their digests, signatures, statements against the records."""
    with rt.sessions() as session:
        return artifacts.verify_artifact(session, rt.artifacts, rt.public_key, artifact_id)


def collect_garbage(rt: Runtime, *, apply: bool = False, now: datetime | None = None) -> GcReport:
    """Expire unreleased artifacts past ``[artifacts] keep_days`` (a dry run by default)."""
    with transaction(rt.sessions) as session:
        return artifacts.collect_garbage(
            session,
            rt.artifacts,
            keep_days=rt.project.settings.artifacts.keep_days,
            apply=apply,
            now=now,
        )
