"""Repository changes in the pipeline: the working copies, the context, the change, its checks.

A ``repo-change:NAME`` task goes through the same durable steps as any task; this module is
what those steps do differently for it:

- generate: a working copy is made at the task's base commit (with the previous attempt's
  change applied on a repair); the context is built from the copy's map and the goal; a model
  tier's reply is parsed as edits and applied to the copy, a coding agent (the ``command``
  tier) changes the copy itself in the sandbox, and a replay re-applies a recorded patch.
  Whatever the copy holds afterwards, against the base, is the attempt's output: the change's
  summary (``change.json``) and patch (``change.patch``).
- verify: the patch is applied to a fresh copy, the repository's environment is taken from
  the cache (or built by its ``setup`` in the sandbox), and the repository's own commands,
  Shipyard's checks on the changed files and the import guard run on it
  (``checks.verify_change``).

Copies are keyed by task and attempt, so a step that runs again after a crash starts from a
clean copy; they are removed when the step is done with them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.checks import ChangeVerification, verify_change
from shipyard.config import RepoSettings
from shipyard.errors import ShipyardError
from shipyard.generate import Generation, GenerationRequest, render
from shipyard.jobs import JobKind, repo_of
from shipyard.model import CheckReport, CheckResult, Finding
from shipyard.orchestrator._runtime import Runtime
from shipyard.repos import (
    EDIT_FORMAT,
    Change,
    ChangeLimits,
    PackageIndex,
    RepoSource,
    WorkingCopy,
    apply_edits,
    apply_patch,
    build_context,
    changes,
    create_working_copy,
    map_working_copy,
    open_repo,
    parse_edits,
    prepare_environment,
    remove_working_copy,
    resolve_index_url,
)
from shipyard.sandbox import Limits, Mount
from shipyard.store import AttemptRow, TaskRow

__all__ = [
    "Collected",
    "collect",
    "generation_request",
    "reset_copy",
    "touched_paths",
    "verify",
]

_SETUP_SECONDS = 900.0
"""Wall clock of one ``setup`` command (installing dependencies takes longer than a test)."""


def settings_of(rt: Runtime, kind: JobKind) -> tuple[str, RepoSettings]:
    name = repo_of(kind)
    found = rt.project.settings.repos.get(name)
    if found is None:
        raise ShipyardError(
            f"job kind {kind.name!r}: no [repos.{name}] in {rt.project.config_path}",
            hint="the repository was removed from shipyard.toml; add it back to go on",
        )
    return name, found


def source(rt: Runtime, kind: JobKind, *, fetch: bool = False) -> RepoSource:
    name, settings = settings_of(rt, kind)
    return open_repo(
        name, settings, root=rt.project.root, state_dir=rt.project.state_dir, fetch=fetch
    )


def _copy(rt: Runtime, kind: JobKind, inputs: dict[str, Any], key: str, patch: str) -> WorkingCopy:
    """A clean copy at the task's base with ``patch`` applied (a repair's starting point)."""
    copy = create_working_copy(source(rt, kind), key=key, base=str(inputs["base"]))
    apply_patch(copy, patch)
    return copy


def _previous_patch(session: Session, task_id: str, attempt: int) -> str:
    previous = session.scalar(
        select(AttemptRow).where(AttemptRow.task_id == task_id, AttemptRow.number == attempt - 1)
    )
    if previous is None or not previous.files:
        return ""
    return str(previous.files.get("change.patch", ""))


def touched_paths(session: Session, kind: JobKind, task_id: str) -> list[str]:
    """Paths earlier changes to this repository touched, most recent first (they rank the
    context: memory of where work on this repository happens)."""
    rows = session.scalars(
        select(AttemptRow.change)
        .join(TaskRow, TaskRow.id == AttemptRow.task_id)
        .where(
            TaskRow.job_kind == kind.name,
            TaskRow.id != task_id,
            AttemptRow.passed.is_(True),
        )
        .order_by(AttemptRow.generated_at.desc())
        .limit(50)
    ).all()
    paths: list[str] = []
    for change in rows:
        for entry in (change or {}).get("files", []):
            paths.append(str(entry.get("path", "")))
    return [p for p in dict.fromkeys(paths) if p]


def _key(task_id: str, what: str, attempt: int) -> str:
    return f"{task_id}-{what}{attempt}"


def generation_request(
    rt: Runtime,
    base: GenerationRequest,
    *,
    recalled: Sequence[dict[str, Any]],
    feedback: Sequence[Finding],
) -> tuple[GenerationRequest, dict[str, Any]]:
    """The attempt's request for a repository change, and the context it was built with.

    The copy it names is where the attempt happens; :func:`reset_copy` makes it clean again
    before each tier is tried.
    """
    kind, inputs = base.kind, base.inputs
    _, settings = settings_of(rt, kind)
    with rt.sessions() as session:
        patch = _previous_patch(session, base.task_id, base.attempt)
        touched = touched_paths(session, kind, base.task_id)
    copy = _copy(rt, kind, inputs, _key(base.task_id, "g", base.attempt), patch)
    goal = str(inputs["goal"])
    context = build_context(
        goal,
        map_working_copy(copy),
        copy.path,
        max_tokens=settings.max_context_tokens,
        touched=touched,
    )
    prompt = render(
        kind.prompt_template,
        {
            "inputs": inputs,
            "context": context.text,
            "edit_format": EDIT_FORMAT,
            "feedback": [f.to_dict() | {"location": f.location()} for f in feedback],
            "recalled": list(recalled),
        },
        name="prompt.md",
        where=kind.name,
    )
    request = replace(
        base,
        prompt=prompt,
        goal=goal,
        reply_format="edits",
        workdir=copy.path,
        mounts=tuple(Mount(source=path) for path in copy.borrowed),
    )
    recorded = context.to_dict()
    recorded.pop("text", None)  # the prompt holds it, as sent
    return request, {"context": recorded, "repair": bool(patch)}


def reset_copy(rt: Runtime, request: GenerationRequest) -> WorkingCopy:
    """The attempt's copy made clean again (base + the previous attempt's change): a tier
    tried after another failed starts where the first did."""
    with rt.sessions() as session:
        patch = _previous_patch(session, request.task_id, request.attempt)
    return _copy(
        rt, request.kind, request.inputs, _key(request.task_id, "g", request.attempt), patch
    )


@dataclass(frozen=True, kw_only=True)
class Collected:
    """What an attempt at a change produced."""

    files: dict[str, str]
    """``change.json`` and ``change.patch`` (none when nothing could be read)."""
    summary: dict[str, Any]
    """The change's per-file summary, for the attempt's record."""
    report: CheckReport | None
    """A failed attempt's report (edits that did not apply, a refused change), else None."""


def collect(
    rt: Runtime, request: GenerationRequest, generation: Generation, copy: WorkingCopy
) -> Collected:
    """The change the generation made to the attempt's ``copy`` (applying a model's edits or
    a recorded patch first), as the attempt's files; the copy is removed afterwards."""
    _, settings = settings_of(rt, request.kind)
    findings: list[Finding] = []
    if generation.provider == "command":
        pass  # the agent changed the copy itself
    elif "change.patch" in generation.files:  # a replay of a recorded change
        apply_patch(copy, generation.files["change.patch"])
    else:
        parsed = parse_edits(generation.reply)
        findings += [p.finding() for p in parsed.problems]
        applied = apply_edits(copy.path, parsed.edits)
        findings += applied.findings
    change = changes(copy, limits=ChangeLimits.from_settings(settings))
    findings += change.findings
    files = change_files(change, goal=request.goal)
    summary = change_summary(change)
    errors = [f for f in findings if f.severity == "error"]
    report = None
    if errors:
        report = CheckReport(
            results=(CheckResult(check="change", passed=False, findings=tuple(findings)),)
        )
    with suppress(OSError):
        remove_working_copy(copy)
    return Collected(files=files, summary=summary, report=report)


def change_summary(change: Change) -> dict[str, Any]:
    """A change's summary: base, resulting tree, each file (without its patch), line counts."""
    return {
        "base": change.base,
        "tree": change.tree,
        "files": [{k: v for k, v in f.to_dict().items() if k != "patch"} for f in change.files],
        "lines_added": change.lines_added,
        "lines_removed": change.lines_removed,
        "agent_head": change.agent_head,
    }


def change_files(change: Change, *, goal: str) -> dict[str, str]:
    """A change as an artifact's files: its summary (with the repository and the goal) and
    its patch."""
    summary = change_summary(change) | {"repo": change.repo, "goal": goal}
    return {
        "change.json": json.dumps(summary, indent=2, sort_keys=True) + "\n",
        "change.patch": change.patch,
    }


def verify(
    rt: Runtime,
    kind: JobKind,
    task_id: str,
    inputs: dict[str, Any],
    attempt: int,
    files: dict[str, Any],
) -> ChangeVerification:
    """Check an attempt's change (its ``files``) on a fresh copy with the repository's own
    commands, Shipyard's checks and the import guard."""
    name, settings = settings_of(rt, kind)
    patch = str(files.get("change.patch", ""))
    copy = _copy(rt, kind, inputs, _key(task_id, "v", attempt), patch)
    try:
        setup_limits = replace(rt.limits, timeout_seconds=_SETUP_SECONDS, cpu_seconds=1800)
        build = prepare_environment(
            copy,
            settings,
            envs_dir=rt.project.state_dir / "envs",
            backend=rt.sandbox,
            limits=setup_limits,
        )
        if build.environment is None:
            report = CheckReport(
                results=(
                    CheckResult(
                        check="setup", passed=False, findings=build.findings, detail=build.log
                    ),
                ),
                sandbox=rt.sandbox.name,
            )
            return ChangeVerification(report=report, facts={})
        change = changes(copy, limits=ChangeLimits.from_settings(settings))
        index = PackageIndex(
            resolve_index_url(settings.index_url),
            cache_file=rt.project.state_dir / "repos" / name / "index-cache.json",
        )
        return verify_change(
            copy,
            change,
            settings,
            goal=str(inputs["goal"]),
            environment=build.environment,
            backend=rt.sandbox,
            limits=_test_limits(rt.limits),
            index=index,
        )
    finally:
        remove_working_copy(copy)


def _test_limits(limits: Limits) -> Limits:
    """A repository's whole test suite gets more time than one generated file's checks."""
    return replace(limits, timeout_seconds=max(limits.timeout_seconds, 600.0))
